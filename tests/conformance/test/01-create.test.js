'use strict'
// Sandbox creation and lookup: Daytona.create() with its wait, get by id and by name, and the raw
// shapes the SDK relies on (POST /api/sandbox, GET /api/sandbox/{idOrName}).
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert, sdk } = c

const REQUIRED_FIELDS = ['cpu', 'disk', 'env', 'gpu', 'id', 'labels', 'memory', 'name', 'networkBlockAll',
  'organizationId', 'public', 'target', 'toolboxProxyUrl', 'user']

describe('create and get', () => {
  let daytona
  const created = new Set()
  before(() => {
    daytona = c.newClient()
  })
  after(async () => {
    await c.cleanup(created)
    await c.disposeClient(daytona)
  })

  it('create() with defaults waits until started and returns a full Sandbox', async () => {
    const t0 = Date.now()
    const sb = await daytona.create()
    created.add(sb.id)
    assert.equal(sb.state, 'started')
    assert.match(sb.id, c.UUID_V4)
    assert.equal(sb.name, sb.id, 'name defaults to the id')
    assert.equal(sb.user, 'daytona')
    assert.deepEqual(sb.env, {})
    assert.equal(sb.labels['code-toolbox-language'], 'python', 'the SDK adds the language label')
    assert.equal(sb.public, false)
    assert.equal(sb.desiredState, 'started')
    assert.equal(sb.autoStopInterval, 15)
    assert.equal(sb.autoArchiveInterval, 10080)
    assert.equal(sb.autoDeleteInterval, -1)
    if (c.TARGET) assert.equal(sb.target, c.TARGET)
    assert.match(sb.toolboxProxyUrl, /^http:\/\/127\.0\.0\.1:\d+\/toolbox$/)
    assert.match(sb.createdAt, c.ISO_MS)
    assert.ok(typeof sb.snapshot === 'string' && sb.snapshot.length > 0, 'default snapshot name')
    assert.ok(Date.now() - t0 < 20000, 'create must not take long with --transition-ms 50')
    // The toolbox answers at once: the sandbox really is started.
    assert.equal(await sb.getWorkDir(), '/home/daytona')
    assert.equal(await sb.getUserHomeDir(), '/home/daytona')
  })

  it('raw POST /api/sandbox: 200, state creating or started, required fields, then started', async () => {
    const r = await c.rest('POST', '/sandbox', { body: {} })
    assert.equal(r.status, 200, r.text)
    const dto = r.json
    created.add(dto.id)
    assert.ok(['creating', 'started'].includes(dto.state), `state ${dto.state}`)
    for (const f of REQUIRED_FIELDS) assert.ok(f in dto, `field ${f} missing from ${r.text}`)
    assert.equal(dto.name, dto.id)
    assert.equal(dto.backupState, 'None')
    assert.equal(dto.sandboxClass, 'container')
    await c.waitFor(async () => (await c.rest('GET', `/sandbox/${dto.id}`)).json.state === 'started', {
      what: 'started',
    })
    const g = await c.rest('GET', `/sandbox/${dto.id}`)
    assert.equal(g.status, 200)
    assert.equal(g.json.desiredState, 'started')
    assert.match(g.json.updatedAt, c.ISO_MS)
  })

  it('create() with labels and env vars', async () => {
    const sb = await daytona.create({
      labels: { team: 'conformance', 'with.dot': 'v 1' },
      envVars: { FOO: 'bar baz', EMPTY: '' },
    })
    created.add(sb.id)
    assert.equal(sb.state, 'started')
    assert.deepEqual(sb.labels, { team: 'conformance', 'with.dot': 'v 1', 'code-toolbox-language': 'python' })
    assert.deepEqual(sb.env, { FOO: 'bar baz', EMPTY: '' })
    // The sandbox env reaches processes started by the toolbox.
    const r = await sb.process.executeCommand('printf "%s|%s" "$FOO" "${EMPTY-unset}"')
    assert.equal(r.exitCode, 0)
    assert.equal(r.result, 'bar baz|')
    // get() returns the same labels and env
    const again = await daytona.get(sb.id)
    assert.deepEqual(again.labels, sb.labels)
    assert.deepEqual(again.env, sb.env)
  })

  it('create() with a language sets the label', async () => {
    const sb = await daytona.create({ language: 'typescript' })
    created.add(sb.id)
    assert.equal(sb.labels['code-toolbox-language'], 'typescript')
  })

  it('create() with a name; get by id and by name; duplicate name is a 409', async () => {
    const name = c.uid('conf-named')
    const sb = await daytona.create({ name })
    created.add(sb.id)
    assert.equal(sb.name, name)
    assert.notEqual(sb.id, name)
    const byId = await daytona.get(sb.id)
    const byName = await daytona.get(name)
    assert.equal(byId.id, sb.id)
    assert.equal(byName.id, sb.id)
    assert.equal(byName.name, name)
    assert.equal(byName.state, 'started')
    // The Sandbox obtained by name talks to the toolbox by id.
    const r = await byName.process.executeCommand('echo via-name')
    assert.equal(r.result, 'via-name\n')
    await c.rejectsWith(() => daytona.create({ name }), sdk.DaytonaConflictError, { status: 409 })
  })

  it('get() of an unknown id or name is a DaytonaNotFoundError with the contract message', async () => {
    const err = await c.rejectsWith(() => daytona.get('no-such-sandbox-xyz'), sdk.DaytonaNotFoundError, {
      status: 404,
    })
    assert.match(err.message, /Sandbox with ID or name no-such-sandbox-xyz not found/)
    const raw = await c.rest('GET', '/sandbox/no-such-sandbox-xyz')
    assert.equal(raw.status, 404)
    assert.equal(raw.json.statusCode, 404)
    assert.equal(raw.json.error, 'Not Found')
    assert.equal(raw.json.path, '/api/sandbox/no-such-sandbox-xyz')
    assert.match(raw.json.timestamp, c.ISO_MS)
  })

  it('a bad API key is a DaytonaAuthenticationError (control plane and toolbox)', async () => {
    const sb = await daytona.create()
    created.add(sb.id)
    const bad = c.newClient({ apiKey: 'wrong-key' })
    try {
      await c.rejectsWith(() => bad.get(sb.id), sdk.DaytonaAuthenticationError, { status: 401 })
    } finally {
      await c.disposeClient(bad)
    }
    const raw = await c.rest('GET', `/sandbox/${sb.id}`, { auth: false })
    assert.equal(raw.status, 401)
    assert.equal(raw.json.message, 'Invalid credentials')
    const tb = await c.rest('GET', `${sb.toolboxProxyUrl}/${sb.id}/files?path=/home/daytona`, {
      headers: { Authorization: 'Bearer wrong-key' },
      auth: false,
    })
    assert.equal(tb.status, 401)
    assert.equal(tb.json.code, 'UNAUTHORIZED')
  })

  it('toolbox of an unknown sandbox id answers 401 (as the proxy does)', async () => {
    const r = await c.rest('GET', `${c.ORIGIN}/toolbox/00000000-0000-4000-8000-000000000000/files?path=/`)
    assert.equal(r.status, 401)
  })

  it('invalid create parameters are rejected by the server (resources with a snapshot: 400)', async () => {
    const sb = await daytona.create()
    created.add(sb.id)
    const r = await c.rest('POST', '/sandbox', { body: { snapshot: sb.snapshot, cpu: 2 } })
    assert.equal(r.status, 400, r.text)
    const unknownSnap = await c.rest('POST', '/sandbox', { body: { snapshot: 'no-such-snapshot:1.0' } })
    assert.equal(unknownSnap.status, 400, unknownSnap.text)
  })
})
