'use strict'
// Listing past one page: 205 sandboxes made cheaply (raw POST /api/sandbox, 16 at a time), then
// Daytona.list() (cursor pagination of GET /api/sandbox) must yield every one exactly once.
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert } = c

const N = 205

describe('list past 200 sandboxes', () => {
  let daytona
  const batch = c.uid('batch')
  let ids = []
  before(async () => {
    daytona = c.newClient()
    ids = await c.pool(Array.from({ length: N }, (_, i) => i), 16, async (i) => {
      const r = await c.rest('POST', '/sandbox', {
        body: { labels: { 'conf-batch': batch, idx: String(i) }, env: {} },
      })
      assert.equal(r.status, 200, r.text)
      return r.json.id
    })
  })
  after(async () => {
    await c.cleanup(ids)
    await c.disposeClient(daytona)
  })

  async function collect(query) {
    const seen = new Map()
    for await (const sb of daytona.list(query)) seen.set(sb.id, (seen.get(sb.id) || 0) + 1)
    return seen
  }

  function assertExactlyOnce(seen, what) {
    const dup = [...seen].filter(([, n]) => n > 1)
    assert.deepEqual(dup, [], `${what}: ids seen more than once`)
    const missing = ids.filter((id) => !seen.has(id))
    assert.deepEqual(missing, [], `${what}: ${missing.length} created sandboxes never listed`)
  }

  it('all 205 ids are distinct UUIDs', () => {
    assert.equal(new Set(ids).size, N)
    for (const id of ids) assert.match(id, c.UUID_V4)
  })

  it('list({labels}) with the default page size sees each exactly once', async () => {
    const seen = await collect({ labels: { 'conf-batch': batch } })
    assertExactlyOnce(seen, 'default limit')
    assert.equal(seen.size, N)
  })

  for (const limit of [200, 50, 7]) {
    it(`list({labels, limit: ${limit}}) pages through all of them`, async () => {
      const seen = await collect({ labels: { 'conf-batch': batch }, limit })
      assertExactlyOnce(seen, `limit ${limit}`)
      assert.equal(seen.size, N)
    })
  }

  it('list() of everything (no filter, limit 100) includes all 205 exactly once', async () => {
    const seen = await collect({ limit: 100 })
    assertExactlyOnce(seen, 'unfiltered')
    assert.ok(seen.size >= N)
  })

  it('list sorted by createdAt asc and by name pages consistently', async () => {
    for (const q of [{ sort: 'createdAt', order: 'asc' }, { sort: 'name', order: 'desc' }]) {
      const seen = await collect({ labels: { 'conf-batch': batch }, limit: 60, ...q })
      assertExactlyOnce(seen, JSON.stringify(q))
    }
  })

  it('label containment needs every listed pair to match', async () => {
    const seen = await collect({ labels: { 'conf-batch': batch, idx: '17' } })
    assert.deepEqual([...seen.keys()], [ids[17]])
    const none = await collect({ labels: { 'conf-batch': batch, idx: 'nope' } })
    assert.equal(none.size, 0)
  })

  it('list items carry toolboxProxyUrl and labels, not env (SandboxListItem)', async () => {
    const r = await c.rest('GET', `/sandbox?limit=3&labels=${encodeURIComponent(JSON.stringify({ 'conf-batch': batch }))}`)
    assert.equal(r.status, 200, r.text)
    assert.equal(r.json.items.length, 3)
    assert.equal(typeof r.json.nextCursor, 'string')
    for (const it of r.json.items) {
      assert.ok(it.toolboxProxyUrl, 'toolboxProxyUrl')
      assert.equal(it.labels['conf-batch'], batch)
      assert.ok(!('env' in it), 'list items have no env')
      assert.ok(!('volumes' in it), 'list items have no volumes')
    }
    // The last page has nextCursor null.
    const all = await c.rest('GET', `/sandbox?limit=200&labels=${encodeURIComponent(JSON.stringify({ idx: '3', 'conf-batch': batch }))}`)
    assert.equal(all.json.items.length, 1)
    assert.equal(all.json.nextCursor, null)
  })

  it('invalid labels JSON is a 400; limit above 200 is a 400', async () => {
    const r = await c.rest('GET', '/sandbox?labels=%7Bnot-json')
    assert.equal(r.status, 400, r.text)
    const r2 = await c.rest('GET', '/sandbox?limit=201')
    assert.equal(r2.status, 400, r2.text)
  })

  it('name and id filters are case-insensitive prefixes', async () => {
    const id = ids[42]
    const prefix = id.slice(0, 13).toUpperCase()
    const seen = await collect({ id: prefix, labels: { 'conf-batch': batch } })
    assert.ok(seen.has(id), 'id prefix match')
    for (const k of seen.keys()) assert.ok(k.toUpperCase().startsWith(prefix))
  })

  it('deleted sandboxes disappear from the list', async () => {
    const victims = ids.slice(0, 5)
    await c.pool(victims, 5, async (id) => {
      const r = await c.rest('DELETE', `/sandbox/${id}`)
      assert.equal(r.status, 200, r.text)
    })
    for (const id of victims) await c.waitGone(id)
    const seen = await collect({ labels: { 'conf-batch': batch } })
    assert.equal(seen.size, N - 5)
    for (const id of victims) assert.ok(!seen.has(id))
  })
})
