'use strict'
// Snapshot of a sandbox (POST /api/sandbox/{id}/snapshot, then the SDK polls until the state leaves
// "snapshotting"), the Snapshot entity (GET /api/snapshots/{name}), a new sandbox from it, and removal.
const { describe, it, before, after } = require('node:test')
const crypto = require('node:crypto')
const c = require('../lib/common')
const { assert, sdk } = c

describe('snapshot of a sandbox', () => {
  let daytona, sb, sb2, snap
  const created = new Set()
  const name = c.uid('conf-snap')
  const data = crypto.randomBytes(100 * 1024)
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create()
    created.add(sb.id)
  })
  after(async () => {
    await c.cleanup(created)
    await c.disposeClient(daytona)
  })

  it('createSnapshot (or _experimental_createSnapshot) waits and returns the sandbox to started', async () => {
    await sb.fs.uploadFile(data, '/home/daytona/snap/data.bin')
    await sb.fs.createFolder('/home/daytona/snap/private', '700')
    const r = await sb.process.executeCommand('echo from-command > /home/daytona/snap/cmd.txt && ln -s cmd.txt /home/daytona/snap/link')
    assert.equal(r.exitCode, 0)
    const fn = typeof sb.createSnapshot === 'function' ? 'createSnapshot' : '_experimental_createSnapshot'
    await sb[fn](name)
    assert.notEqual(sb.state, 'snapshotting')
    await c.waitFor(async () => (await c.rest('GET', `/sandbox/${sb.id}`)).json.state === 'started', { what: 'started' })
  })

  it('the snapshot is an active Snapshot entity', async () => {
    snap = await c.waitFor(async () => {
      const s = await daytona.snapshot.get(name)
      return s.state === 'active' ? s : null
    }, { what: 'snapshot active' })
    assert.equal(snap.name, name)
    assert.match(snap.id, c.UUID_V4)
    assert.equal(snap.general, false)
    for (const f of ['cpu', 'gpu', 'mem', 'disk', 'createdAt', 'updatedAt']) assert.ok(f in snap, `field ${f}`)
    const list = await daytona.snapshot.list()
    assert.ok(list.items.some((s) => s.name === name), 'listed')
    assert.ok(list.total >= 1)
    const raw = await c.rest('GET', `/snapshots/${encodeURIComponent(name)}`)
    assert.equal(raw.status, 200)
    assert.equal(raw.json.id, snap.id)
    await c.rejectsWith(() => daytona.snapshot.get('no-such-snapshot-xyz'), sdk.DaytonaNotFoundError, { status: 404 })
  })

  it('a new sandbox from the snapshot has the files, modes and links', async () => {
    sb2 = await daytona.create({ snapshot: name })
    created.add(sb2.id)
    assert.equal(sb2.state, 'started')
    assert.equal(sb2.snapshot, name)
    assert.notEqual(sb2.id, sb.id)
    assert.ok((await sb2.fs.downloadFile('/home/daytona/snap/data.bin')).equals(data))
    assert.equal((await sb2.fs.downloadFile('/home/daytona/snap/cmd.txt')).toString(), 'from-command\n')
    assert.equal((await sb2.fs.getFileDetails('/home/daytona/snap/private')).permissions, '0700')
    const r = await sb2.process.executeCommand('readlink /home/daytona/snap/link; cat /home/daytona/snap/link')
    assert.equal(r.result, 'cmd.txt\nfrom-command\n')
  })

  it('the two sandboxes are independent', async () => {
    await sb2.fs.uploadFile(Buffer.from('changed'), '/home/daytona/snap/cmd.txt')
    await sb2.fs.uploadFile(Buffer.from('new'), '/home/daytona/snap/only-in-2.txt')
    assert.equal((await sb.fs.downloadFile('/home/daytona/snap/cmd.txt')).toString(), 'from-command\n')
    await c.rejectsWith(() => sb.fs.getFileDetails('/home/daytona/snap/only-in-2.txt'), sdk.DaytonaNotFoundError)
    // and a later change in the origin does not leak into the snapshot
    await sb.fs.uploadFile(Buffer.from('later'), '/home/daytona/snap/later.txt')
    const sb3 = await daytona.create({ snapshot: name })
    created.add(sb3.id)
    await c.rejectsWith(() => sb3.fs.getFileDetails('/home/daytona/snap/later.txt'), sdk.DaytonaNotFoundError)
  })

  it('a stopped sandbox can be snapshotted too, and stays stopped', async () => {
    await sb.stop()
    const name2 = c.uid('conf-snap-stopped')
    const r = await c.rest('POST', `/sandbox/${sb.id}/snapshot`, { body: { name: name2 } })
    assert.equal(r.status, 200, r.text)
    assert.ok(['snapshotting', 'stopped'].includes(r.json.state), r.json.state)
    await c.waitFor(async () => (await c.rest('GET', `/sandbox/${sb.id}`)).json.state === 'stopped', { what: 'stopped again' })
    const s = await c.waitFor(async () => {
      const g = await c.rest('GET', `/snapshots/${name2}`)
      return g.status === 200 && g.json.state === 'active' ? g.json : null
    }, { what: 'second snapshot active' })
    const sb4 = await daytona.create({ snapshot: name2 })
    created.add(sb4.id)
    assert.equal((await sb4.fs.downloadFile('/home/daytona/snap/later.txt')).toString(), 'later')
    await daytona.snapshot.delete(s.id)
  })

  it('snapshot without a name is a 400', async () => {
    const r = await c.rest('POST', `/sandbox/${sb2.id}/snapshot`, { body: {} })
    assert.equal(r.status, 400, r.text)
  })

  it('delete the snapshot: by name is a 400 on the raw route, the SDK resolves the id; then 404', async () => {
    const byName = await c.rest('DELETE', `/snapshots/${name}`)
    assert.equal(byName.status, 400, byName.text)
    await daytona.snapshot.delete(name)
    await c.waitFor(async () => (await c.rest('GET', `/snapshots/${name}`)).status === 404, { what: 'snapshot removed' })
    await c.rejectsWith(() => daytona.create({ snapshot: name }, { timeout: 10 }), sdk.DaytonaValidationError, { status: 400 })
    // sandboxes made from it live on
    assert.equal((await sb2.fs.downloadFile('/home/daytona/snap/only-in-2.txt')).toString(), 'new')
  })
})
