'use strict'
// Which HTTP calls the SDK really makes, read back from the server's request log (/_local/log):
// downloads go through bulk-download, uploads through bulk-upload, create polls GET, list pages with a
// cursor, and the client opens a socket.io WebSocket at /api/socket.io/. Also the /_local knobs.
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert } = c

async function logSince(fn) {
  const r0 = await c.local('POST', '/_local/stats/reset')
  assert.equal(r0.status, 204, r0.text)
  await fn()
  const r = await c.local('GET', '/_local/log?limit=10000')
  assert.equal(r.status, 200, r.text)
  return r.json
}

const calls = (log) => log.map((e) => `${e.method} ${e.path}`)

describe('what goes over the wire', () => {
  let daytona, sb
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create()
  })
  after(async () => {
    if (sb) await c.cleanup([sb.id])
    await c.disposeClient(daytona)
  })

  it('/_local/health, /_local/stats and /_local/log answer without auth', async () => {
    const h = await c.local('GET', '/_local/health')
    assert.equal(h.status, 200)
    assert.deepEqual(h.json, { ok: true })
    const s = await c.local('GET', '/_local/stats')
    assert.equal(s.status, 200)
    for (const k of ['requests', 'bytes_in', 'bytes_out', 'routes']) assert.ok(k in s.json, k)
  })

  it('uploadFile is one POST /files/bulk-upload (multipart), downloadFile one POST /files/bulk-download', async () => {
    const log = await logSince(async () => {
      await sb.fs.uploadFile(Buffer.from('wire'), '/home/daytona/wire.txt')
    })
    const up = calls(log)
    assert.deepEqual(up, [`POST /toolbox/${sb.id}/files/bulk-upload`])
    assert.equal(log[0].status, 200)
    assert.ok(log[0].bytes_in > 4, 'multipart body counted')
    const log2 = await logSince(async () => {
      assert.equal((await sb.fs.downloadFile('/home/daytona/wire.txt')).toString(), 'wire')
    })
    assert.deepEqual(calls(log2), [`POST /toolbox/${sb.id}/files/bulk-download`])
    const st = await c.local('GET', '/_local/stats')
    const keys = Object.keys(st.json.routes)
    assert.ok(keys.some((k) => /^POST \/toolbox\/\{[^}]+\}\/files\/bulk-download$/.test(k)), keys.join(', '))
  })

  it('the other fs calls map 1:1 onto the toolbox routes', async () => {
    const d = '/home/daytona/wire'
    const log = await logSince(async () => {
      await sb.fs.createFolder(d, '755')
      await sb.fs.listFiles(d)
      await sb.fs.getFileDetails(d)
      await sb.fs.uploadFile(Buffer.from('a'), `${d}/a`)
      await sb.fs.moveFiles(`${d}/a`, `${d}/b`)
      await sb.fs.setFilePermissions(`${d}/b`, { mode: '600' })
      await sb.fs.findFiles(d, 'a')
      await sb.fs.searchFiles(d, '*')
      await sb.fs.deleteFile(`${d}/b`)
    })
    const p = (s) => s.replace(/\?.*$/, '')
    assert.deepEqual(log.map((e) => `${e.method} ${p(e.path)}`), [
      'POST /files/folder', 'GET /files', 'GET /files/info', 'POST /files/bulk-upload', 'POST /files/move',
      'POST /files/permissions', 'GET /files/find', 'GET /files/search', 'DELETE /files',
    ].map((s) => s.replace(' /', ` /toolbox/${sb.id}/`)))
    assert.deepEqual(log.map((e) => e.status), [201, 200, 200, 200, 200, 200, 200, 200, 204])
    // query encoding: the SDK sends form encoding (space as '+', '+' as %2B)
    const log2 = await logSince(async () => {
      await sb.fs.getFileDetails('/home/daytona/wire.txt').catch(() => {})
      await sb.fs.uploadFile(Buffer.from('x'), '/home/daytona/a b+c.txt')
      await sb.fs.getFileDetails('/home/daytona/a b+c.txt')
    })
    assert.ok(log2[2].path.endsWith('path=%2Fhome%2Fdaytona%2Fa+b%2Bc.txt'), log2[2].path)
    assert.equal(log2[2].status, 200)
  })

  it('create() is POST /api/sandbox then GET polls until started; the socket.io WebSocket is opened', async () => {
    let s
    const log = await logSince(async () => {
      // a fresh client inside the logged window, so its socket.io connection is in the log
      const d2 = c.newClient()
      s = await d2.create()
      await c.sleep(300)
      await c.disposeClient(d2)
      await c.sleep(300) // a WebSocket may be logged when it closes
    })
    await c.cleanup([s.id])
    const cl = calls(log)
    const api = cl.filter((x) => !x.includes('/socket.io/'))
    assert.equal(api[0], 'POST /api/sandbox')
    for (const x of api.slice(1)) assert.equal(x, `GET /api/sandbox/${s.id}`)
    const sio = log.filter((e) => e.path.includes('/api/socket.io/'))
    assert.ok(sio.length >= 1, `socket.io connection attempted: ${cl.join(', ')}`)
    assert.match(sio[0].path, /^\/api\/socket\.io\/\?.*EIO=4.*transport=websocket/)
    assert.equal(sio[0].status, 101, 'WebSocket upgrade accepted')
  })

  it('list() pages GET /api/sandbox with limit and cursor', async () => {
    const ids = []
    for (let i = 0; i < 3; i++) {
      const r = await c.rest('POST', '/sandbox', { body: { labels: { wire: 'list' } } })
      ids.push(r.json.id)
    }
    try {
      const log = await logSince(async () => {
        const seen = []
        for await (const s of daytona.list({ labels: { wire: 'list' }, limit: 2 })) seen.push(s.id)
        assert.deepEqual(seen.sort(), [...ids].sort())
      })
      const lists = log.filter((e) => e.path.startsWith('/api/sandbox?'))
      assert.equal(lists.length, 2, calls(log).join(', '))
      assert.match(lists[0].path, /limit=2/)
      assert.ok(!/cursor=/.test(lists[0].path))
      assert.match(lists[1].path, /cursor=/)
    } finally {
      await c.cleanup(ids)
    }
  })

  it('executeCommand is POST /process/execute; streaming logs use a WebSocket on .../logs?follow=true', async () => {
    await sb.process.createSession('wire')
    const log = await logSince(async () => {
      await sb.process.executeCommand('true')
      const r = await sb.process.executeSessionCommand('wire', { command: 'echo x', runAsync: true })
      await sb.process.getSessionCommandLogs('wire', r.cmdId, () => {}, () => {})
    })
    const cl = calls(log)
    assert.equal(cl[0], `POST /toolbox/${sb.id}/process/execute`)
    assert.equal(cl[1], `POST /toolbox/${sb.id}/process/session/wire/exec`)
    const ws = log.find((e) => /\/logs\?follow=true$/.test(e.path))
    assert.ok(ws, cl.join(', '))
    assert.equal(ws.status, 101)
  })

  it('PUT /_local/latency adds delay to API calls (not to /_local)', async () => {
    const r = await c.local('PUT', '/_local/latency', { ms: 200 })
    assert.equal(r.status, 204, r.text)
    try {
      const t0 = Date.now()
      await daytona.get(sb.id)
      assert.ok(Date.now() - t0 >= 190, `latency applied (${Date.now() - t0} ms)`)
      const t1 = Date.now()
      await c.local('GET', '/_local/health')
      assert.ok(Date.now() - t1 < 150, '/_local not delayed')
    } finally {
      await c.local('PUT', '/_local/latency', { ms: 0 })
    }
  })

  it('an injected fault surfaces as the matching SDK error', async () => {
    const f = await c.local('POST', '/_local/faults', {
      pattern: `/toolbox/${sb.id}/files/info`, method: 'GET', action: 'status', status: 503, count: 1,
    })
    assert.equal(f.status, 201, f.text)
    try {
      await c.rejectsWith(() => sb.fs.getFileDetails('/home/daytona'), c.sdk.DaytonaServiceUnavailableError, { status: 503 })
      const ok = await sb.fs.getFileDetails('/home/daytona')
      assert.equal(ok.isDir, true, 'count: 1 means only once')
      const list = await c.local('GET', '/_local/faults')
      assert.equal(list.status, 200)
    } finally {
      const d = await c.local('DELETE', '/_local/faults')
      assert.ok([200, 204].includes(d.status), d.text)
    }
  })
})
