'use strict'
// Commands through the SDK: waited and detached, output, exit codes, signals, user, sudo, env.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { Sandbox, Command, CommandFinished } = require('@vercel/sandbox')
const { creds, uniqueName, raw, stats, resetStats } = require('../lib/common')

let sandbox

before(async () => {
  sandbox = await Sandbox.create(creds({ name: uniqueName('cmd'), env: { SANDBOX_WIDE: 'yes' } }))
})
after(async () => { if (sandbox) await sandbox.delete() })

test('a waited command returns its exit code and tagged output', async () => {
  const r = await sandbox.runCommand('sh', ['-c', 'echo out; echo err >&2; exit 3'])
  assert.ok(r instanceof CommandFinished)
  assert.equal(r.exitCode, 3)
  assert.equal(await r.stdout(), 'out\n')
  assert.equal(await r.stderr(), 'err\n')
  assert.equal(await r.output('both'), 'out\nerr\n')
})

test('the default user, its HOME and working directory are the default image\'s; sudo is root', async () => {
  const r = await sandbox.runCommand('sh', ['-c', 'id -un; id -u; pwd; echo $HOME; sudo id -un; sudo sh -c \'echo $HOME\''])
  assert.equal(r.exitCode, 0, await r.stderr())
  assert.deepEqual((await r.stdout()).split('\n'), ['ubuntu', '1000', '/vercel/sandbox', '/vercel', 'root', '/root', ''])
  const user = await sandbox.resolveDefaultUser()
  assert.deepEqual(user, { username: 'ubuntu', group: 'ubuntu' })
  const root = await sandbox.runCommand({ cmd: 'sh', args: ['-c', 'id -un; echo $HOME'], sudo: true })
  assert.equal(await root.stdout(), 'root\n/root\n')
})

test('env: the sandbox\'s and the command\'s; cwd relative to the working directory', async () => {
  await sandbox.mkDir('sub')
  const r = await sandbox.runCommand({ cmd: 'sh', args: ['-c', 'echo $SANDBOX_WIDE $FOO; pwd'], env: { FOO: 'bar' }, cwd: 'sub' })
  assert.equal(await r.stdout(), 'yes bar\n/vercel/sandbox/sub\n')
  assert.equal(r.cwd, '/vercel/sandbox/sub')
})

test('output is UTF-8: invalid bytes are replaced, characters split across writes are whole', async () => {
  const r = await sandbox.runCommand('sh', ['-c', 'printf "a\\377b\\n"; printf "\\303"; sleep 0.1; printf "\\251\\n"'])
  assert.equal(await r.stdout(), 'a\ufffdb\né\n')
})

test('a detached command: logs follow it, kill signals it, wait reports the signal', async () => {
  const cmd = await sandbox.runCommand({ cmd: 'sh', args: ['-c', 'echo started; exec sleep 30'], detached: true })
  assert.ok(cmd instanceof Command)
  assert.equal(cmd.exitCode, null)
  const logs = cmd.logs()
  const first = await logs.next()
  assert.deepEqual(first.value, { stream: 'stdout', data: 'started\n' })
  const got = await sandbox.getCommand(cmd.cmdId)
  assert.equal(got.exitCode, null)
  await cmd.kill('SIGTERM')
  const done = await cmd.wait()
  assert.equal(done.exitCode, 128 + 15)
  assert.equal((await logs.next()).done, true)
})

test('a detached command waited for, then its output (replayed from the start)', async () => {
  const cmd = await sandbox.runCommand({ cmd: 'sh', args: ['-c', 'echo one; sleep 0.2; echo two >&2'], detached: true })
  const done = await cmd.wait()
  assert.equal(done.exitCode, 0)
  assert.equal(typeof done.durationMs, 'number')
  assert.equal(await done.stdout(), 'one\n')
  assert.equal(await done.stderr(), 'two\n')
})

test('a program that does not exist: exit 127 and a message on stderr, with or without sudo', async () => {
  for (const sudo of [false, true]) {
    const r = await sandbox.runCommand({ cmd: 'no-such-program', args: ['x'], sudo })
    assert.equal(r.exitCode, 127)
    assert.equal(await r.stderr(), 'no-such-program: command not found\n')
  }
  const abs = await sandbox.runCommand('/usr/bin/env', ['echo', 'found'])
  assert.equal(await abs.stdout(), 'found\n')
})

test('a command timeout kills it (exit 137)', async () => {
  const r = await sandbox.runCommand({ cmd: 'sleep', args: ['30'], timeoutMs: 200 })
  assert.equal(r.exitCode, 137)
})

test('the command list has the most recent first', async () => {
  const a = await sandbox.runCommand('true')
  const b = await sandbox.runCommand('false')
  assert.equal(b.exitCode, 1)
  const sid = sandbox.currentSession().sessionId
  const res = await raw('GET', `/v2/sandboxes/sessions/${sid}/cmd`)
  assert.equal(res.status, 200)
  const ids = res.json.commands.map((c) => c.id)
  assert.ok(ids.indexOf(b.cmdId) < ids.indexOf(a.cmdId))
  assert.ok(res.json.commands.every((c) => c.sessionId === sid))
})

test('one waited command is one request', async () => {
  await resetStats()
  const r = await sandbox.runCommand('echo', ['x'])
  assert.equal(await r.stdout(), 'x\n')
  const s = await stats()
  assert.equal(s.routes['POST /api/v2/sandboxes/sessions/{sid}/cmd'], 1)
})
