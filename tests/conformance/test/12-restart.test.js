'use strict'
// State survives a server restart: this file starts its OWN server (scripts/daytona-local --port 0 on a
// fresh data dir), makes sandboxes, a session-less file tree, a snapshot, stops the server with
// SIGTERM (it must exit cleanly), starts it again on the same data dir and checks with the SDK.
const { describe, it, before, after } = require('node:test')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { Daytona, DaytonaNotFoundError } = require('@daytonaio/sdk')
const assert = require('node:assert/strict')

const LAUNCHER = path.resolve(__dirname, '..', '..', '..', 'scripts', 'daytona-local')
const KEY = 'restart-key'

function startServer(data) {
  return new Promise((resolve, reject) => {
    // the same knobs as run.sh: no listing lag, no stale runner (see there)
    const proc = spawn(LAUNCHER, ['--port', '0', '--data', data, '--transition-ms', '50', '--list-lag-ms', '0',
      '--runner-cache-ms', '0', '--api-key', KEY, '--quiet'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    proc.stderr.on('data', (d) => (stderr += d))
    const rl = readline.createInterface({ input: proc.stdout })
    const timer = setTimeout(() => reject(new Error(`server did not print its URL: ${stderr}`)), 30000)
    rl.once('line', (line) => {
      clearTimeout(timer)
      proc.stdout.resume()
      resolve({ proc, url: line.trim(), stderr: () => stderr })
    })
    proc.once('exit', (code) => reject(new Error(`server exited early (${code}): ${stderr}`)))
  })
}

function stopServer(srv) {
  return new Promise((resolve) => {
    const t0 = Date.now()
    const timer = setTimeout(() => srv.proc.kill('SIGKILL'), 15000)
    srv.proc.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, ms: Date.now() - t0 })
    })
    srv.proc.kill('SIGTERM')
  })
}

describe('server restart keeps state', () => {
  let data
  let srv
  const ids = {}
  before(() => {
    data = fs.mkdtempSync(path.join(os.tmpdir(), 'conf-restart-'))
  })
  after(async () => {
    if (srv && srv.proc.exitCode === null) await stopServer(srv)
    fs.rmSync(data, { recursive: true, force: true })
  })

  const client = () => new Daytona({ apiUrl: srv.url, apiKey: KEY, target: 'us' })

  it('before: sandboxes in several states, files, a snapshot', async () => {
    srv = await startServer(data)
    assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+\/api$/)
    const d = client()
    try {
      const a = await d.create({ name: 'restart-started', labels: { k: 'v' }, envVars: { E: '1' } })
      await a.fs.uploadFile(Buffer.from('survives'), '/home/daytona/r/file.txt')
      await a.fs.setFilePermissions('/home/daytona/r/file.txt', { mode: '640' })
      const b = await d.create({ name: 'restart-stopped' })
      await b.fs.uploadFile(Buffer.from('stopped one'), '/home/daytona/s.txt')
      await b.stop()
      const gone = await d.create({ name: 'restart-deleted' })
      await gone.delete(30, true)
      await a.createSnapshot('restart-snap')
      Object.assign(ids, { a: a.id, b: b.id, gone: gone.id })
    } finally {
      await d[Symbol.asyncDispose]()
    }
    const st = await stopServer(srv)
    assert.equal(st.signal, null, 'exited by itself on SIGTERM')
    assert.equal(st.code, 0, `SIGTERM exit code: ${srv.stderr()}`)
    assert.ok(st.ms < 10000, `shutdown took ${st.ms} ms`)
  })

  it('after: same sandboxes, states, labels, env, files, snapshot', async () => {
    srv = await startServer(data)
    const d = client()
    try {
      const a = await d.get('restart-started')
      assert.equal(a.id, ids.a)
      assert.equal(a.state, 'started')
      assert.deepEqual(a.labels, { k: 'v', 'code-toolbox-language': 'python' })
      assert.deepEqual(a.env, { E: '1' })
      assert.ok(a.toolboxProxyUrl.startsWith(srv.url.replace(/\/api$/, '')), 'toolboxProxyUrl follows the new port')
      assert.equal((await a.fs.downloadFile('/home/daytona/r/file.txt')).toString(), 'survives')
      assert.equal((await a.fs.getFileDetails('/home/daytona/r/file.txt')).permissions, '0640')
      assert.equal((await a.process.executeCommand('echo $E')).result, '1\n')
      const b = await d.get(ids.b)
      assert.equal(b.state, 'stopped')
      await b.start()
      assert.equal((await b.fs.downloadFile('/home/daytona/s.txt')).toString(), 'stopped one')
      await assert.rejects(() => d.get(ids.gone), DaytonaNotFoundError)
      const snap = await d.snapshot.get('restart-snap')
      assert.equal(snap.state, 'active')
      const c2 = await d.create({ snapshot: 'restart-snap' })
      assert.equal((await c2.fs.downloadFile('/home/daytona/r/file.txt')).toString(), 'survives')
      const seen = []
      for await (const s of d.list()) seen.push(s.name)
      assert.deepEqual(seen.filter((n) => n.startsWith('restart-')).sort(), ['restart-started', 'restart-stopped'])
    } finally {
      await d[Symbol.asyncDispose]()
    }
    const st = await stopServer(srv)
    assert.equal(st.code, 0)
  })
})
