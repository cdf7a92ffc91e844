'use strict'
// Sandbox.list across pages and filters; snapshots: create (stops the session), get, list, delete,
// a sandbox made from one.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { Sandbox, Snapshot } = require('@vercel/sandbox')
const { creds, uniqueName, raw, assertApiError } = require('../lib/common')

const made = []
after(async () => { for (const s of made) await s.delete().catch(() => {}) })

async function create(extra) {
  const s = await Sandbox.create(creds({ name: uniqueName('ls'), ...extra }))
  made.push(s)
  return s
}

test('Sandbox.list: cursor pages, tag filter, name prefix, sort order', async () => {
  const group = uniqueName('g')
  const names = []
  for (let i = 0; i < 5; i++) names.push((await create({ tags: { group } })).name)
  const result = await Sandbox.list(creds({ limit: 2, tags: { group } }))
  assert.equal(result.sandboxes.length, 2)
  assert.equal(result.pagination.count, 2)
  assert.equal(typeof result.pagination.next, 'string')
  const pages = []
  for await (const page of result.pages()) pages.push(page.sandboxes.map((s) => s.name))
  assert.deepEqual(pages.map((p) => p.length), [2, 2, 1])
  assert.deepEqual(pages.flat(), [...names].reverse())          // newest first by default
  const all = await (await Sandbox.list(creds({ limit: 2, tags: { group } }))).toArray()
  assert.deepEqual(all.map((s) => s.name), [...names].reverse())
  const asc = await (await Sandbox.list(creds({ limit: 3, tags: { group }, sortOrder: 'asc' }))).toArray()
  assert.deepEqual(asc.map((s) => s.name), names)
  const prefix = names[0].slice(0, names[0].lastIndexOf('-') + 1)
  const byName = await (await Sandbox.list(creds({ limit: 2, sortBy: 'name', namePrefix: prefix, sortOrder: 'asc' }))).toArray()
  assert.ok(names.every((n) => byName.some((s) => s.name === n)))
  assert.deepEqual(byName.map((s) => s.name), [...byName.map((s) => s.name)].sort())
  await assertApiError(Sandbox.list(creds({ namePrefix: 'x' })), 400, 'bad_request')
})

test('snapshot: stops the session; get, list, a sandbox from it, delete', async () => {
  const sb = await create()
  await sb.writeFiles([{ path: 'data.txt', content: 'snapshotted' }])
  const sid = sb.currentSession().sessionId
  const snap = await sb.snapshot()
  assert.match(snap.snapshotId, /^snap_/)
  assert.equal(snap.status, 'created')
  assert.equal(snap.sourceSessionId, sid)
  assert.ok(snap.sizeBytes >= 'snapshotted'.length)
  const session = (await raw('GET', `/v2/sandboxes/sessions/${sid}`)).json.session
  assert.ok(['snapshotting', 'stopped'].includes(session.status))
  const got = await Snapshot.get(creds({ snapshotId: snap.snapshotId }))
  assert.equal(got.snapshotId, snap.snapshotId)
  const listed = await (await Snapshot.list(creds({ name: sb.name }))).toArray()
  assert.deepEqual(listed.map((s) => s.id), [snap.snapshotId])
  const own = await (await sb.listSnapshots()).toArray()
  assert.deepEqual(own.map((s) => s.id), [snap.snapshotId])

  const copy = await create({ source: { type: 'snapshot', snapshotId: snap.snapshotId } })
  assert.equal((await copy.readFileToBuffer({ path: 'data.txt' })).toString(), 'snapshotted')
  await copy.writeFiles([{ path: 'data.txt', content: 'changed in the copy' }])
  // the original resumes with its own files
  assert.equal((await sb.readFileToBuffer({ path: 'data.txt' })).toString(), 'snapshotted')
  assert.notEqual(sb.currentSession().sessionId, sid)

  await got.delete()
  assert.equal(got.status, 'deleted')
  await assertApiError(Snapshot.get(creds({ snapshotId: snap.snapshotId })), 404, 'not_found')
  await assertApiError(create({ source: { type: 'snapshot', snapshotId: snap.snapshotId } }), 410, 'snapshot_not_found')
})

test('a snapshotting session answers 422 sandbox_snapshotting until it has stopped', async () => {
  const { setTiming } = require('../lib/common')
  const sb = await create()
  await setTiming({ transition_ms: 400 })
  try {
    const sid = sb.currentSession().sessionId
    await sb.snapshot()
    const r = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/mkdir`, { body: { path: 'x' } })
    assert.equal(r.status, 422)
    assert.equal(r.json.error.code, 'sandbox_snapshotting')
    await sb.mkDir('after')                 // the SDK resumes once it is stopped
    assert.notEqual(sb.currentSession().sessionId, sid)
  } finally {
    await setTiming({ transition_ms: 50 })
  }
})

test('Snapshot.tree: ancestors (desc) and descendants (asc) a page at a time, siblings, counts', async () => {
  const sb = await create()
  const ids = []
  for (const v of ['1', '2', '3']) {
    await sb.writeFiles([{ path: 'v', content: v }])     // resumes after the previous snapshot
    ids.push((await sb.snapshot()).snapshotId)
  }
  const branch = await create({ source: { type: 'snapshot', snapshotId: ids[0] } })
  const side = (await branch.snapshot()).snapshotId     // a second child of ids[0]
  const up = await Snapshot.tree(creds({ snapshotId: ids[2], sortOrder: 'desc', limit: 1 }))
  assert.equal(up.anchor.snapshot.id, ids[2])
  const pages = []
  for await (const page of up.pages()) pages.push(page.snapshots.map((n) => n.snapshot.id))
  assert.deepEqual(pages, [[ids[1]], [ids[0]]])
  const down = await (await Snapshot.tree(creds({ snapshotId: ids[0], sortOrder: 'asc' }))).toArray()
  assert.deepEqual(down.map((n) => n.snapshot.id), [side])          // the newest child
  const root = (await Snapshot.tree(creds({ snapshotId: ids[0] }))).anchor
  assert.equal(root.count, '2')
  const mid = (await Snapshot.tree(creds({ snapshotId: ids[1] }))).anchor
  assert.deepEqual(mid.siblings.map((s) => s.id), [side])
})
