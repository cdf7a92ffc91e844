'use strict'
// Sessions: stop, errors for a stopped session, resume (a new session id, files kept), timeouts,
// extendTimeout, persistence, the stopping state.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { Sandbox } = require('@vercel/sandbox')
const { creds, uniqueName, raw, setTiming, assertApiError, stats, resetStats } = require('../lib/common')

const made = []
after(async () => {
  await setTiming({ transition_ms: 50, minute_ms: 60000 })
  for (const s of made) await s.delete().catch(() => {})
})

async function create(extra) {
  const s = await Sandbox.create(creds({ name: uniqueName('life'), ...extra }))
  made.push(s)
  return s
}

async function sessionStatus(sid) {
  const r = await raw('GET', `/v2/sandboxes/sessions/${sid}`)
  assert.equal(r.status, 200)
  return r.json.session
}

async function waitStatus(sid, want) {
  for (let i = 0; i < 200; i++) {
    const s = await sessionStatus(sid)
    if (s.status === want) return s
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`session ${sid} never became ${want}`)
}

test('stop: the session stops, its endpoints answer 410 sandbox_stopped, the SDK resumes by itself', async () => {
  const sb = await create()
  await sb.writeFiles([{ path: 'kept.txt', content: 'kept' }])
  const first = sb.currentSession().sessionId
  const cmd = await sb.runCommand({ cmd: 'sh', args: ['-c', 'echo $$ > pid; exec sleep 30'], detached: true })
  for (let i = 0; i < 100 && (await sb.readFileToBuffer({ path: 'pid' })) === null; i++) await new Promise((r) => setTimeout(r, 20))
  const stopped = await sb.stop()
  assert.ok(['stopping', 'stopped'].includes(stopped.status))
  await waitStatus(first, 'stopped')
  assert.equal(sb.status, stopped.status)   // what the stop answered
  const r = await raw('POST', `/v2/sandboxes/sessions/${first}/cmd`, { body: { command: 'true' } })
  assert.equal(r.status, 410)
  assert.equal(r.json.error.code, 'sandbox_stopped')
  const gone = await raw('GET', `/v2/sandboxes/sessions/${first}/cmd/${cmd.cmdId}`, { query: { wait: 'true' } })
  assert.equal(gone.status, 410)
  // the SDK meets the 410 and resumes: a new session, the files of the old one
  await resetStats()
  assert.equal((await sb.readFileToBuffer({ path: 'kept.txt' })).toString(), 'kept')
  const second = sb.currentSession().sessionId
  assert.notEqual(second, first)
  const s = await stats()
  assert.equal(s.routes['POST /api/v2/sandboxes/sessions/{sid}/fs/read'], 2)
  assert.equal(s.routes['GET /api/v2/sandboxes/{name}'], 1)
  // the processes of the stopped session are gone (or zombies, where the host's init does not reap)
  const ps = await sb.runCommand('sh', ['-c', 's=$(cut -d" " -f3 /proc/$(cat pid)/stat 2>/dev/null); [ -z "$s" ] || [ "$s" = Z ] && echo gone || echo alive'])
  assert.equal(await ps.stdout(), 'gone\n')
})

test('Sandbox.get with resume: a new session id each time it was stopped; resumed flags', async () => {
  const sb = await create()
  await sb.writeFiles([{ path: 'x', content: '1' }])
  const running = await Sandbox.get(creds({ name: sb.name, resume: true }))
  assert.equal(running.currentSession().sessionId, sb.currentSession().sessionId)
  await sb.stop()
  const plain = await Sandbox.get(creds({ name: sb.name }))
  assert.ok(['stopping', 'stopped'].includes(plain.status))
  const r1 = await raw('GET', `/v2/sandboxes/${sb.name}`, { query: { resume: 'true', projectId: process.env.VERCEL_LOCAL_PROJECT } })
  assert.equal(r1.status, 200)
  assert.equal(r1.json.resumed, true)
  assert.equal(r1.json.session.status, 'running')
  assert.equal(r1.json.sandbox.currentSessionId, r1.json.session.id)
  const again = await raw('GET', `/v2/sandboxes/${sb.name}`, { query: { resume: 'true' } })
  assert.equal(again.json.resumed, false)
  assert.equal(again.json.session.id, r1.json.session.id)
  await raw('POST', `/v2/sandboxes/sessions/${r1.json.session.id}/stop`)
  const resumed = await Sandbox.get(creds({ name: sb.name, resume: true }))
  const sid = resumed.currentSession().sessionId
  assert.ok(![sb.currentSession().sessionId, r1.json.session.id].includes(sid))
  assert.equal((await resumed.readFileToBuffer({ path: 'x' })).toString(), '1')
  const sessions = await (await resumed.listSessions({ limit: 2 })).toArray()   // two pages
  assert.equal(sessions.length, 3)
  assert.equal(sessions[0].id, sid)    // newest first
  assert.deepEqual(sessions.map((s) => s.status), ['running', 'stopped', 'stopped'])
})

test('the session timeout stops it; a persistent sandbox keeps its files, a non-persistent one does not', async () => {
  // a "minute" of 100 ms: the 60 s timeouts below last 100 ms
  await setTiming({ minute_ms: 100 })
  try {
    const keep = await create({ timeout: 60000 })
    const lose = await create({ timeout: 60000, persistent: false })
    await keep.writeFiles([{ path: 'f', content: 'keep' }])
    await lose.writeFiles([{ path: 'f', content: 'lose' }])
    await waitStatus(keep.currentSession().sessionId, 'stopped')
    await waitStatus(lose.currentSession().sessionId, 'stopped')
    await setTiming({ minute_ms: 60000 })
    assert.equal((await keep.readFileToBuffer({ path: 'f' })).toString(), 'keep')
    assert.equal(await lose.readFileToBuffer({ path: 'f' }), null)
  } finally {
    await setTiming({ minute_ms: 60000 })
  }
})

test('extendTimeout lengthens the running session', async () => {
  const sb = await create({ timeout: 60000 })
  await sb.extendTimeout(30000)
  const s = await sessionStatus(sb.currentSession().sessionId)
  assert.equal(s.timeout, 90000)
  assert.equal(s.status, 'running')
  await assertApiError(sb.extendTimeout(10), 400, 'bad_request')
})

test('while stopping: 422 sandbox_stopping; the SDK waits it out and resumes', async () => {
  const sb = await create()
  await setTiming({ transition_ms: 600 })
  try {
    const sid = sb.currentSession().sessionId
    const stopped = await sb.stop()
    assert.equal(stopped.status, 'stopping')
    const r = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/read`, { body: { path: 'x' } })
    assert.equal(r.status, 422)
    assert.equal(r.json.error.code, 'sandbox_stopping')
    const echo = await sb.runCommand('echo', ['back'])
    assert.equal(await echo.stdout(), 'back\n')
    assert.notEqual(sb.currentSession().sessionId, sid)
  } finally {
    await setTiming({ transition_ms: 50 })
  }
})

test('update changes the sandbox; delete removes it (404 afterwards)', async () => {
  const sb = await Sandbox.create(creds({ name: uniqueName('upd') }))
  await sb.update({ timeout: 400000, tags: { team: 'a' } })
  // the PATCH records the new default; the SDK extends the running session by the difference
  const session = (await raw('GET', `/v2/sandboxes/sessions/${sb.currentSession().sessionId}`)).json.session
  assert.equal(session.timeout, 400000)
  const got = await Sandbox.get(creds({ name: sb.name }))
  assert.equal(got.timeout, 400000)
  assert.deepEqual(got.tags, { team: 'a' })
  await sb.delete()
  await assertApiError(Sandbox.get(creds({ name: sb.name })), 404, 'not_found')
})
