'use strict'
// Lifecycle through the SDK: stop / start / archive / start from archived, state-change conflicts,
// labels, auto-stop/archive/delete intervals, activity, public, delete (then NotFound).
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert, sdk } = c

const FAST_MS = Number(process.env.CONFORMANCE_TRANSITION_MS || 50)

// Whether a host pid is a live (non-zombie) process.
function hostAlive(pid) {
  try {
    const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

async function rawState(id) {
  const r = await c.rest('GET', `/sandbox/${id}`)
  return r.status === 200 ? r.json.state : `HTTP ${r.status}`
}

describe('lifecycle', () => {
  let daytona, sb
  const created = new Set()
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create({ name: c.uid('conf-life') })
    created.add(sb.id)
  })
  after(async () => {
    await c.local('PUT', '/_local/timing', { transition_ms: FAST_MS })
    await c.cleanup(created)
    await c.disposeClient(daytona)
  })

  it('stop() waits until stopped; processes are killed; the toolbox refuses with 400', async () => {
    await sb.fs.uploadFile(Buffer.from('persist me'), '/home/daytona/persist.txt')
    await sb.process.executeCommand("setsid sh -c 'echo $$ > /tmp/life.pid; exec sleep 300' >/dev/null 2>&1 </dev/null &")
    await c.waitFor(async () => (await sb.process.executeCommand('test -s /tmp/life.pid && echo y')).result === 'y\n', { what: 'pid' })
    const pid = (await sb.process.executeCommand('cat /tmp/life.pid')).result.trim()
    await sb.stop()
    assert.equal(sb.state, 'stopped')
    assert.equal(await rawState(sb.id), 'stopped')
    const err = await c.rejectsWith(() => sb.fs.listFiles('/home/daytona'), sdk.DaytonaValidationError, { status: 400 })
    assert.ok(err.message.length > 0)
    const raw = await c.rest('GET', `${sb.toolboxProxyUrl}/${sb.id}/files?path=/home/daytona`)
    assert.equal(raw.status, 400)
    assert.equal(raw.json.statusCode, 400, 'toolbox error is a JSON ErrorResponse')
    // The process of the stopped sandbox is gone from the host.
    // (the pid is in the host's pid namespace: sandboxes share it by design). A SIGKILLed orphan
    // may stay a zombie until init reaps it: that counts as dead.
    assert.equal(hostAlive(pid), false, `process ${pid} survived stop`)
  })

  it('stop of a stopped sandbox is a 400', async () => {
    const r = await c.rest('POST', `/sandbox/${sb.id}/stop`)
    assert.equal(r.status, 400, r.text)
  })

  it('start() waits until started; files persist', async () => {
    await sb.start()
    assert.equal(sb.state, 'started')
    assert.equal((await sb.fs.downloadFile('/home/daytona/persist.txt')).toString(), 'persist me')
    // start of a started sandbox: 200 unchanged
    const r = await c.rest('POST', `/sandbox/${sb.id}/start`)
    assert.equal(r.status, 200, r.text)
    assert.equal(r.json.state, 'started')
    await sb.start()
    assert.equal(sb.state, 'started')
    const a = await c.rest('POST', `/sandbox/${sb.id}/archive`)
    assert.equal(a.status, 400, `archive of a started sandbox: ${a.text}`)
    await c.rejectsWith(() => sb.archive(), sdk.DaytonaValidationError, { status: 400 })
  })

  it('archive() from stopped, then start() restores it', async () => {
    await sb.stop()
    await sb.archive()
    assert.ok(['archiving', 'archived'].includes(sb.state), sb.state)
    await c.waitFor(async () => (await rawState(sb.id)) === 'archived', { what: 'archived' })
    await sb.refreshData()
    assert.equal(sb.state, 'archived')
    await c.rejectsWith(() => sb.fs.listFiles('/home/daytona'), sdk.DaytonaValidationError, { status: 400 })
    await sb.start()
    assert.equal(sb.state, 'started')
    assert.equal((await sb.fs.downloadFile('/home/daytona/persist.txt')).toString(), 'persist me')
    assert.equal((await sb.process.executeCommand('cat /home/daytona/persist.txt')).result, 'persist me')
  })

  it('a second lifecycle call during a transition is a 409 (DaytonaConflictError)', async () => {
    const t = await c.local('PUT', '/_local/timing', { transition_ms: 1500 })
    assert.equal(t.status, 204, t.text)
    try {
      const stop = await c.rest('POST', `/sandbox/${sb.id}/stop`)
      assert.equal(stop.status, 200, stop.text)
      assert.equal(stop.json.state, 'stopping')
      const again = await c.rest('POST', `/sandbox/${sb.id}/start`)
      assert.equal(again.status, 409, again.text)
      assert.match(again.json.message, /state change in progress/i)
      await c.rejectsWith(() => sb.start(), sdk.DaytonaConflictError, { status: 409 })
      const del = await c.rest('DELETE', `/sandbox/${sb.id}`)
      assert.equal(del.status, 409, del.text)
      await c.waitFor(async () => (await rawState(sb.id)) === 'stopped', { what: 'stopped' })
      // start waits server-side, then the SDK polls: it still ends up started
      await sb.start()
      assert.equal(sb.state, 'started')
    } finally {
      await c.local('PUT', '/_local/timing', { transition_ms: FAST_MS })
    }
  })

  it('setLabels replaces all labels; list finds the sandbox by them', async () => {
    const labels = await sb.setLabels({ env: 'dev', owner: 'conformance' })
    assert.deepEqual(labels, { env: 'dev', owner: 'conformance' })
    assert.deepEqual(sb.labels, { env: 'dev', owner: 'conformance' })
    const fresh = await daytona.get(sb.id)
    assert.deepEqual(fresh.labels, { env: 'dev', owner: 'conformance' })
    const found = []
    for await (const s of daytona.list({ labels: { owner: 'conformance', env: 'dev' } })) found.push(s.id)
    assert.deepEqual(found, [sb.id])
    const r = await c.rest('PUT', `/sandbox/${sb.id}/labels`, { body: { labels: { only: 'one' } } })
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(r.json.labels, { only: 'one' })
  })

  it('setAutostopInterval and friends; the raw sub-resource POSTs answer 201', async () => {
    await sb.setAutostopInterval(30)
    assert.equal(sb.autoStopInterval, 30)
    await sb.refreshData()
    assert.equal(sb.autoStopInterval, 30)
    await sb.setAutostopInterval(0)
    await sb.refreshData()
    assert.equal(sb.autoStopInterval, 0)
    const raw = await c.rest('POST', `/sandbox/${sb.id}/autostop/45`)
    assert.equal(raw.status, 201, raw.text)
    assert.equal(raw.json.autoStopInterval, 45)
    const neg = await c.rest('POST', `/sandbox/${sb.id}/autostop/-1`)
    assert.equal(neg.status, 400, neg.text)
    await c.rejectsWith(() => sb.setAutostopInterval(-1), sdk.DaytonaInvalidArgumentError)

    await sb.setAutoArchiveInterval(60)
    await sb.refreshData()
    assert.equal(sb.autoArchiveInterval, 60)
    await sb.setAutoArchiveInterval(0) // 0 means the maximum
    await sb.refreshData()
    assert.equal(sb.autoArchiveInterval, 43200)

    await sb.setAutoDeleteInterval(120)
    await sb.refreshData()
    assert.equal(sb.autoDeleteInterval, 120)
    await sb.setAutoDeleteInterval(-1)
    await sb.refreshData()
    assert.equal(sb.autoDeleteInterval, -1)

    const pub = await c.rest('POST', `/sandbox/${sb.id}/public/true`)
    assert.equal(pub.status, 201, pub.text)
    assert.equal(pub.json.public, true)
    await sb.refreshData()
    assert.equal(sb.public, true)
  })

  it('refreshActivity touches lastActivityAt (POST last-activity: 201)', async () => {
    await sb.refreshData()
    const before = Date.parse(sb.lastActivityAt)
    await c.sleep(20)
    await sb.refreshActivity()
    await sb.refreshData()
    assert.ok(Date.parse(sb.lastActivityAt) > before, `${sb.lastActivityAt} should be after ${new Date(before).toISOString()}`)
    const raw = await c.rest('POST', `/sandbox/${sb.id}/last-activity`)
    assert.equal(raw.status, 201, raw.text)
  })

  it('toolbox traffic counts as activity unless X-Daytona-Skip-Last-Activity-Update is sent', async () => {
    await sb.refreshData()
    const t1 = sb.lastActivityAt
    await c.sleep(20)
    const skip = await c.rest('GET', `${sb.toolboxProxyUrl}/${sb.id}/files?path=/home/daytona`, {
      headers: { 'X-Daytona-Skip-Last-Activity-Update': 'true' },
    })
    assert.equal(skip.status, 200)
    await sb.refreshData()
    assert.equal(sb.lastActivityAt, t1, 'skip header: no activity update')
    await sb.fs.listFiles('/home/daytona')
    await c.waitFor(async () => {
      await sb.refreshData()
      return sb.lastActivityAt !== t1
    }, { timeoutMs: 5000, what: 'lastActivityAt to move' })
  })

  it('delete: destroying with a DESTROYED_ name, then get is a DaytonaNotFoundError; the name is free again', async () => {
    const name = sb.name
    const raw = await c.rest('DELETE', `/sandbox/${sb.id}`)
    assert.equal(raw.status, 200, raw.text)
    assert.equal(raw.json.state, 'destroying')
    assert.match(raw.json.name, new RegExp(`^DESTROYED_${name}_\\d{13}$`))
    await c.waitGone(sb.id)
    await c.rejectsWith(() => daytona.get(sb.id), sdk.DaytonaNotFoundError, { status: 404 })
    await c.rejectsWith(() => daytona.get(name), sdk.DaytonaNotFoundError, { status: 404 })
    // the toolbox of a destroyed sandbox: 401 like the proxy
    const tb = await c.rest('GET', `${sb.toolboxProxyUrl}/${sb.id}/files?path=/`)
    assert.equal(tb.status, 401)
    const again = await daytona.create({ name })
    created.add(again.id)
    assert.equal(again.name, name)
    assert.notEqual(again.id, sb.id)
  })

  it('Sandbox.delete(timeout, wait=true) through the SDK, then get() is NotFound', async () => {
    const s = await daytona.create()
    created.add(s.id)
    await s.delete(30, true)
    await c.rejectsWith(() => daytona.get(s.id), sdk.DaytonaNotFoundError, { status: 404 })
    const d2 = await daytona.create()
    created.add(d2.id)
    await daytona.delete(d2)
    await c.waitGone(d2.id)
  })

  it('an ephemeral sandbox is deleted on stop', async () => {
    const e = await daytona.create({ ephemeral: true })
    created.add(e.id)
    assert.equal(e.autoDeleteInterval, 0)
    await e.stop()
    assert.ok(['stopped', 'destroyed'].includes(e.state), e.state)
    await c.waitGone(e.id)
  })
})
