'use strict'
// More of the control plane through the SDK: sandboxes built from an image (buildInfo), snapshots
// from an image, preview links, network settings, the toolbox-proxy-url and paginated list endpoints.
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert, sdk } = c

describe('control plane extras', () => {
  let daytona, sb
  const created = new Set()
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create({ labels: { extras: 'yes' } })
    created.add(sb.id)
  })
  after(async () => {
    await c.cleanup(created)
    await c.disposeClient(daytona)
  })

  it('create({image, resources}) goes through the build states and starts with the resources', async () => {
    const s = await daytona.create({ image: 'python:3.12-slim', resources: { cpu: 2, memory: 2, disk: 5 } })
    created.add(s.id)
    assert.equal(s.state, 'started')
    assert.equal(s.cpu, 2)
    assert.equal(s.memory, 2)
    assert.equal(s.disk, 5)
    assert.ok(s.buildInfo && /FROM python:3\.12-slim/.test(s.buildInfo.dockerfileContent), JSON.stringify(s.buildInfo))
    assert.equal((await s.process.executeCommand('echo built')).result, 'built\n')
    // raw: the first answer is one of the build states (or already further)
    const r = await c.rest('POST', '/sandbox', { body: { buildInfo: { dockerfileContent: 'FROM debian:12\n' } } })
    assert.equal(r.status, 200, r.text)
    created.add(r.json.id)
    assert.ok(['pending_build', 'building_snapshot', 'pulling_snapshot', 'creating', 'started'].includes(r.json.state), r.json.state)
    assert.equal(r.json.cpu, 1)
    assert.equal(r.json.memory, 1)
    assert.equal(r.json.disk, 3)
    await c.waitFor(async () => (await c.rest('GET', `/sandbox/${r.json.id}`)).json.state === 'started', { what: 'built sandbox started' })
    const both = await c.rest('POST', '/sandbox', { body: { snapshot: sb.snapshot, buildInfo: { dockerfileContent: 'FROM debian:12\n' } } })
    assert.equal(both.status, 400, both.text)
  })

  it('snapshot.create({name, image}) becomes active and can seed sandboxes; :latest and duplicates are refused', async () => {
    const name = c.uid('conf-img')
    const snap = await daytona.snapshot.create({ name, image: 'ubuntu:22.04' }, { timeout: 60 })
    assert.equal(snap.state, 'active')
    assert.equal(snap.name, name)
    assert.equal(snap.imageName, 'ubuntu:22.04')
    const s = await daytona.create({ snapshot: name })
    created.add(s.id)
    assert.equal(s.snapshot, name)
    assert.equal(s.state, 'started')
    await c.rejectsWith(() => daytona.snapshot.create({ name, image: 'ubuntu:22.04' }), sdk.DaytonaConflictError, { status: 409 })
    const latest = await c.rest('POST', '/snapshots', { body: { name: c.uid('conf-latest'), imageName: 'ubuntu:latest' } })
    assert.equal(latest.status, 400, latest.text)
    const r = await c.rest('GET', `/snapshots?name=${name}`)
    assert.equal(r.status, 200)
    assert.ok(r.json.items.some((x) => x.name === name))
    for (const k of ['total', 'page', 'totalPages']) assert.equal(typeof r.json[k], 'number', k)
    await daytona.snapshot.delete(snap)
  })

  it('getPreviewLink returns a url and a token', async () => {
    const link = await sb.getPreviewLink(3000)
    assert.equal(typeof link.url, 'string')
    assert.ok(link.url.length > 0)
    assert.equal(typeof link.token, 'string')
    const raw = await c.rest('GET', `/sandbox/${sb.id}/ports/3000/preview-url`)
    assert.equal(raw.status, 200)
    assert.equal(raw.json.sandboxId, sb.id)
  })

  it('GET /sandbox/{id}/toolbox-proxy-url matches the DTO', async () => {
    const r = await c.rest('GET', `/sandbox/${sb.id}/toolbox-proxy-url`)
    assert.equal(r.status, 200)
    assert.deepEqual(r.json, { url: sb.toolboxProxyUrl })
  })

  it('updateNetworkSettings sets the fields; an empty body is a 400', async () => {
    await sb.updateNetworkSettings({ networkBlockAll: true })
    assert.equal(sb.networkBlockAll, true)
    await sb.updateNetworkSettings({ networkAllowList: '10.0.0.0/8,192.168.0.0/16', networkBlockAll: false })
    const fresh = await daytona.get(sb.id)
    assert.equal(fresh.networkBlockAll, false)
    assert.equal(fresh.networkAllowList, '10.0.0.0/8,192.168.0.0/16')
    const r = await c.rest('POST', `/sandbox/${sb.id}/network-settings`, { body: {} })
    assert.equal(r.status, 400, r.text)
  })

  it('recover of a healthy sandbox is a 400; pause of a container sandbox is a 422', async () => {
    await c.rejectsWith(() => sb.recover(), sdk.DaytonaValidationError, { status: 400 })
    await c.rejectsWith(() => sb.pause(), sdk.DaytonaUnprocessableEntityError, { status: 422 })
  })

  it('GET /sandbox/paginated returns full Sandbox objects with page counts', async () => {
    const lbl = encodeURIComponent(JSON.stringify({ extras: 'yes' }))
    const r = await c.rest('GET', `/sandbox/paginated?page=1&limit=10&labels=${lbl}`)
    assert.equal(r.status, 200, r.text)
    assert.equal(r.json.total, 1)
    assert.equal(r.json.page, 1)
    assert.equal(r.json.totalPages, 1)
    assert.equal(r.json.items[0].id, sb.id)
    assert.ok('env' in r.json.items[0], 'full Sandbox DTO')
  })
})
