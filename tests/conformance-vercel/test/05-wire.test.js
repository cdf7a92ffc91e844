'use strict'
// What the SDK hides: authentication errors, content types, NDJSON framing, both path prefixes,
// the legacy /v2 create, retries under injected faults, and the /_local knobs.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { Sandbox, StreamError } = require('@vercel/sandbox')
const { creds, uniqueName, raw, local, stats, resetStats, addFault, clearFaults, assertApiError, seen, TEAM, PROJECT } = require('../lib/common')

let sandbox
let sid

before(async () => {
  sandbox = await Sandbox.create(creds({ name: uniqueName('wire') }))
  sid = sandbox.currentSession().sessionId
})
after(async () => {
  await clearFaults()
  await local('PUT', '/_local/latency', { ms: 0 })
  if (sandbox) await sandbox.delete()
})

test('the SDK sends its requests to https://vercel.com/api with teamId', () => {
  assert.ok(seen.length > 0)
  for (const url of seen) assert.equal(new URL(url).searchParams.get('teamId'), TEAM)
  assert.ok(seen.some((u) => u.startsWith('https://vercel.com/api/v3/sandboxes?')))
})

test('no token: 401; a wrong token: 403 invalidToken; another team: 403', async () => {
  const none = await raw('GET', '/v2/sandboxes', { token: null })
  assert.equal(none.status, 401)
  assert.equal(none.json.error.code, 'unauthorized')
  const wrong = await raw('GET', '/v2/sandboxes', { token: 'nope' })
  assert.equal(wrong.status, 403)
  assert.deepEqual(wrong.json.error, { code: 'forbidden', message: 'Not authorized', invalidToken: true })
  const team = await raw('GET', '/v2/sandboxes', { query: { teamId: 'team_other' } })
  assert.equal(team.status, 403)
  await assertApiError(Sandbox.get(creds({ name: sandbox.name, token: 'nope' })), 403, 'forbidden')
})

test('paths without the /api prefix work too; JSON bodies are application/json', async () => {
  const r = await raw('GET', `/v2/sandboxes/${sandbox.name}`, { query: { projectId: PROJECT } })
  assert.equal(r.status, 200)
  assert.equal(r.headers.get('content-type'), 'application/json')
  const res = await fetch(`${process.env.VERCEL_LOCAL_URL.replace(/\/api$/, '')}/v2/sandboxes/${sandbox.name}?teamId=${TEAM}`, { headers: { authorization: 'Bearer ' + process.env.VERCEL_LOCAL_TOKEN } })
  assert.equal(res.status, 200)
  assert.equal((await res.json()).sandbox.name, sandbox.name)
  const other = await raw('GET', '/v2/sandboxes', { query: { project: 'prj_other' } })
  assert.equal(other.status, 404)
})

test('wait:true streams NDJSON: the command, stdout/stderr lines, the finished command', async () => {
  const r = await raw('POST', `/v2/sandboxes/sessions/${sid}/cmd`, { body: { command: 'sh', args: ['-c', 'echo a; echo b >&2'], env: {}, sudo: false, wait: true, logs: true } })
  assert.equal(r.status, 200)
  assert.equal(r.headers.get('content-type'), 'application/x-ndjson')
  assert.ok(r.text.endsWith('\n'))
  const lines = r.text.trimEnd().split('\n').map((l) => JSON.parse(l))
  assert.equal(lines[0].command.exitCode, null)
  assert.equal(lines[0].command.sessionId, sid)
  const logs = lines.slice(1, -1)
  assert.deepEqual(logs.filter((l) => l.stream === 'stdout'), [{ stream: 'stdout', data: 'a\n' }])
  assert.deepEqual(logs.filter((l) => l.stream === 'stderr'), [{ stream: 'stderr', data: 'b\n' }])
  const last = lines[lines.length - 1].command
  assert.equal(last.exitCode, 0)
  assert.equal(last.id, lines[0].command.id)
  // without logs: only the two command lines
  const quiet = await raw('POST', `/v2/sandboxes/sessions/${sid}/cmd`, { body: { command: 'echo', args: ['x'], wait: true } })
  assert.equal(quiet.text.trimEnd().split('\n').length, 2)
  const logsOnly = await raw('GET', `/v2/sandboxes/sessions/${sid}/cmd/${last.id}/logs`)
  assert.equal(logsOnly.headers.get('content-type'), 'application/x-ndjson')
  assert.equal(logsOnly.text.trimEnd().split('\n').length, 2)
})

test('a session stopped under a waited command: the stream ends with a sandbox_stopped error line', async () => {
  const sb = await Sandbox.create(creds({ name: uniqueName('wire-stop') }))
  try {
    const run = sb.runCommand('sleep', ['30']).then(() => null, (err) => err)
    await new Promise((r) => setTimeout(r, 300))
    await raw('POST', `/v2/sandboxes/sessions/${sb.currentSession().sessionId}/stop`)
    const err = await run
    assert.ok(err instanceof StreamError, String(err))
    assert.equal(err.code, 'sandbox_stopped')
  } finally {
    await sb.delete()
  }
})

test('429 with Retry-After: the SDK waits and retries; the counters see both attempts', async () => {
  await sandbox.writeFiles([{ path: 'r.txt', content: 'retry' }])
  await addFault({ pattern: '/fs/read', status: 429, retry_after: 1, count: 1 })
  const direct = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/read`, { body: { path: 'r.txt' } })
  assert.equal(direct.status, 429)
  assert.equal(direct.headers.get('retry-after'), '1')
  assert.equal(direct.json.error.code, 'rate_limited')
  await addFault({ pattern: '/fs/read', status: 429, retry_after: 1, count: 1 })
  await resetStats()
  assert.equal((await sandbox.readFileToBuffer({ path: 'r.txt' })).toString(), 'retry')
  const s = await stats()
  assert.equal(s.routes['POST /api/v2/sandboxes/sessions/{sid}/fs/read'], 2)
  const log = await local('GET', '/_local/log?limit=2')
  assert.deepEqual(log.map((e) => e.status), [429, 200])
})

test('a 503 is retried by the SDK; a 410 fault is met by a resume', async () => {
  await clearFaults()
  await addFault({ pattern: '/cmd$|/cmd\\?', method: 'POST', status: 503, count: 1 })
  const r = await sandbox.runCommand('echo', ['ok'])
  assert.equal(await r.stdout(), 'ok\n')
  await addFault({ pattern: '/fs/mkdir', status: 410, count: 1 })
  await sandbox.mkDir('after-410')        // 410 -> GET ?resume=true (running: same session) -> retry
  assert.equal(sandbox.currentSession().sessionId, sid)
})

test('the latency knob is the shared one: set, read back, answers still right', async () => {
  await local('PUT', '/_local/latency', { ms: 30 })
  assert.deepEqual(await local('GET', '/_local/latency'), { ms: 30 })
  const r = await sandbox.runCommand('echo', ['slow'])
  assert.equal(await r.stdout(), 'slow\n')
  await local('PUT', '/_local/latency', { ms: 0 })
})

test('POST /v2/sandboxes with a runtime: the legacy user vercel-sandbox', async () => {
  const sb = await Sandbox.create(creds({ name: uniqueName('legacy'), runtime: 'node22' }))
  try {
    assert.equal(sb.runtime ?? sb.currentSession().runtime, 'node22')
    const r = await sb.runCommand('id', ['-un'])
    assert.equal(await r.stdout(), 'vercel-sandbox\n')
  } finally {
    await sb.delete()
  }
  assert.ok(seen.some((u) => u.startsWith('https://vercel.com/api/v2/sandboxes?')))
})
