'use strict'
// The sandbox surface of issue 16 through the SDK's public API: volumes (and a sandbox that mounts
// one), network settings at create, preview links (plain and signed, through the server's preview
// proxy), build logs of image builds (sandboxes and snapshots), getMetricsLatest and updateEnv.
const http = require('node:http')
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert, sdk } = c

// GET through a preview URL: the server is reached on loopback and told the preview host.
function viaPreview(url, path, headers = {}) {
  const u = new URL(url)
  const origin = new URL(process.env.DAYTONA_API_URL)
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: origin.hostname, port: origin.port, path, headers: { ...headers, Host: u.host }, timeout: 30000 },
      (res) => {
        const parts = []
        res.on('data', (d) => parts.push(d))
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts).toString() }))
      },
    )
    req.on('timeout', () => req.destroy(new Error('preview request timed out')))
    req.on('error', reject)
    req.end()
  })
}

async function readyVolume(daytona, name) {
  let v = await daytona.volume.get(name, true)
  await c.waitFor(async () => (v = await daytona.volume.get(name)).state === 'ready', { what: `volume ${name} ready` })
  return v
}

describe('sandbox surface (issue 16)', () => {
  let daytona, sb
  const created = new Set()
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create({ labels: { surface: 'yes' } })
    created.add(sb.id)
  })
  after(async () => {
    await c.local('PUT', '/_local/timing', { build_ms: Number(process.env.CONFORMANCE_TRANSITION_MS || 50) })
    await c.cleanup(created)
    await c.disposeClient(daytona)
  })

  it('volume.create/get/list/delete follow the states; get(name, true) creates', async () => {
    const name = c.uid('conf-vol')
    await c.rejectsWith(() => daytona.volume.get(name), sdk.DaytonaNotFoundError, { status: 404 })
    const v = await daytona.volume.create(name)
    assert.equal(v.name, name)
    assert.equal(v.state, 'pending_create')
    assert.equal(v.lastUsedAt, null)
    await c.rejectsWith(() => daytona.volume.create(name), sdk.DaytonaValidationError, { status: 400 })
    const ready = await readyVolume(daytona, name)
    assert.equal(ready.id, v.id)
    assert.ok((await daytona.volume.list()).some((x) => x.id === v.id))
    await daytona.volume.delete(ready)
    const gone = (await c.rest('GET', `/volumes/${v.id}`)).json
    assert.ok(['pending_delete', 'deleting', 'deleted'].includes(gone.state), gone.state)
    await c.waitFor(async () => (await c.rest('GET', `/volumes/${v.id}`)).json.state === 'deleted', { what: 'volume deleted' })
    assert.ok(!(await daytona.volume.list()).some((x) => x.id === v.id))
    const again = await daytona.volume.get(name, true)
    assert.notEqual(again.id, v.id)
  })

  it('a sandbox created with volumes sees their files; an in-use volume cannot be deleted', async () => {
    const vol = await readyVolume(daytona, c.uid('conf-vol'))
    const a = await daytona.create({ volumes: [{ volumeId: vol.id, mountPath: '/home/daytona/data' }] })
    created.add(a.id)
    const b = await daytona.create({ volumes: [{ volumeId: vol.name, mountPath: '/mnt/shared' }] })
    created.add(b.id)
    assert.deepEqual(b.volumes, [{ volumeId: vol.id, mountPath: '/mnt/shared' }])
    assert.equal((await a.process.executeCommand('echo on-volume > /home/daytona/data/f')).exitCode, 0)
    assert.equal((await b.process.executeCommand('cat /mnt/shared/f')).result, 'on-volume\n')
    assert.equal((await b.fs.downloadFile('/mnt/shared/f')).toString(), 'on-volume\n')
    await c.rejectsWith(() => daytona.volume.delete(vol), sdk.DaytonaConflictError, { status: 409 })
    await c.rejectsWith(
      () => daytona.create({ volumes: [{ volumeId: c.uid('no-vol'), mountPath: '/data' }] }),
      sdk.DaytonaNotFoundError,
      { status: 404 },
    )
    for (const s of [a, b]) {
      await daytona.delete(s)
      created.delete(s.id)
    }
    await daytona.volume.delete(vol)
  })

  it('create with networkBlockAll / networkAllowList shows them; a bad allow list is a 400', async () => {
    const s = await daytona.create({ networkBlockAll: true, networkAllowList: '10.0.0.0/8' })
    created.add(s.id)
    assert.equal(s.networkBlockAll, true)
    assert.equal(s.networkAllowList, '10.0.0.0/8')
    const out = await s.process.executeCommand("bash -c 'exec 3<>/dev/tcp/127.0.0.1/9 && echo open || echo blocked' 2>/dev/null")
    assert.equal(out.result, 'blocked\n')
    const eleven = Array.from({ length: 11 }, (_, i) => `10.0.${i}.0/24`).join(',')
    await c.rejectsWith(() => daytona.create({ networkAllowList: eleven }), sdk.DaytonaValidationError, {
      status: 400,
      message: /more than 10 networks/,
    })
    await c.rejectsWith(() => daytona.create({ networkAllowList: '10.0.0.1' }), sdk.DaytonaValidationError, { status: 400 })
  })

  it('getPreviewLink reaches a server in the sandbox with the token; signed URLs need none until expired', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000)
    await sb.fs.uploadFile(Buffer.from('served from the sandbox\n'), '/home/daytona/www/index.html')
    const session = c.uid('www')
    await sb.process.createSession(session)
    await sb.process.executeSessionCommand(session, {
      command: `cd /home/daytona/www && exec python3 -m http.server ${port} --bind 127.0.0.1`,
      runAsync: true,
    })
    const link = await sb.getPreviewLink(port)
    assert.equal(typeof link.token, 'string')
    assert.ok(link.url.includes(`${port}-${sb.id}.`), link.url)
    await c.waitFor(async () => (await viaPreview(link.url, '/', { 'X-Daytona-Preview-Token': link.token })).status === 200, {
      what: 'preview server up',
    })
    const page = await viaPreview(link.url, '/index.html', { 'X-Daytona-Preview-Token': link.token })
    assert.deepEqual(page, { status: 200, body: 'served from the sandbox\n' })
    assert.equal((await viaPreview(link.url, '/index.html')).status, 401)
    const signed = await sb.getSignedPreviewUrl(port, 120)
    assert.equal(signed.sandboxId, sb.id)
    assert.equal(signed.port, port)
    assert.ok(signed.url.includes(`${port}-${signed.token}.`), signed.url)
    assert.equal((await viaPreview(signed.url, '/index.html')).status, 200)
    await sb.expireSignedPreviewUrl(port, signed.token)
    assert.notEqual((await viaPreview(signed.url, '/index.html')).status, 200)
    await sb.process.deleteSession(session)
  })

  it('create({image}) with onSnapshotCreateLogs streams the build log', async () => {
    await c.local('PUT', '/_local/timing', { build_ms: 1500 })
    const lines = []
    const s = await daytona.create(
      { image: sdk.Image.base('debian:12').runCommands('echo hi') },
      { onSnapshotCreateLogs: (l) => lines.push(l), timeout: 60 },
    )
    created.add(s.id)
    assert.equal(s.state, 'started')
    const text = lines.join('\n')
    assert.match(text, /Step 1\/2 : FROM debian:12/)
    assert.match(text, /Step 2\/2 : RUN echo hi/)
    assert.match(text, /Successfully tagged /)
  })

  it('snapshot.create from an Image with onLogs streams its build log', async () => {
    await c.local('PUT', '/_local/timing', { build_ms: 3000 })
    const lines = []
    const name = c.uid('conf-built')
    const snap = await daytona.snapshot.create({ name, image: sdk.Image.base('alpine:3.20') }, { onLogs: (l) => lines.push(l), timeout: 60 })
    assert.equal(snap.state, 'active')
    const text = lines.join('\n')
    assert.match(text, /Step 1\/1 : FROM alpine:3\.20/)
    assert.match(text, new RegExp(`Created snapshot ${name}`))
    await daytona.snapshot.delete(snap)
  })

  it('getMetricsLatest gives the limits and usage; updateEnv reaches later commands', async () => {
    const m = await sb.getMetricsLatest()
    assert.equal(m.cpuCount, sb.cpu)
    assert.equal(m.memTotal, sb.memory * 2 ** 30)
    assert.equal(m.diskTotal, sb.disk * 2 ** 30)
    assert.ok(m.memUsed >= 0 && m.diskUsed >= 0 && m.cpuUsedPct >= 0)
    assert.ok(m.timestamp instanceof Date && !isNaN(m.timestamp))
    await sb.updateEnv({ SURFACE_VAR: 'set-by-updateEnv' })
    assert.equal((await sb.process.executeCommand('echo $SURFACE_VAR')).result, 'set-by-updateEnv\n')
    await sb.updateEnv({}, { unset: ['SURFACE_VAR'] })
    assert.equal((await sb.process.executeCommand('echo "[$SURFACE_VAR]"')).result, '[]\n')
  })
})
