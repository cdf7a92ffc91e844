'use strict'
// An SDK client process must exit by itself when its work is done: the socket.io event connection
// (and its timers) must not keep Node's event loop alive. Each case runs lib/child-exit.js as a child
// process with a hard timeout.
const { describe, it, before, after } = require('node:test')
const { spawn } = require('node:child_process')
const path = require('node:path')
const c = require('../lib/common')
const { assert } = c

const CHILD = path.join(__dirname, '..', 'lib', 'child-exit.js')
const HARD_TIMEOUT_MS = 45000
const EXIT_GRACE_MS = 5000 // from the child's last output line to its exit

function runChild(args) {
  return new Promise((resolve) => {
    const t0 = Date.now()
    const child = spawn(process.execPath, [CHILD, ...args], {
      cwd: path.join(__dirname, '..'),
      env: { ...process.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let lineAt = 0
    child.stdout.on('data', (d) => {
      stdout += d
      if (!lineAt && stdout.includes('\n')) lineAt = Date.now()
    })
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), HARD_TIMEOUT_MS)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      const exitAt = Date.now()
      let out
      try {
        out = JSON.parse(stdout.split('\n')[0])
      } catch {
        out = { unparsed: stdout }
      }
      resolve({ code, signal, out, stderr, total: exitAt - t0, linger: lineAt ? exitAt - lineAt : null })
    })
  })
}

describe('the SDK client process exits by itself', () => {
  let daytona, sb
  const created = new Set()
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create()
    created.add(sb.id)
  })
  after(async () => {
    await c.cleanup(created)
    await c.disposeClient(daytona)
  })

  function check(res, what) {
    const info = JSON.stringify({ ...res, stderr: res.stderr.slice(-2000) })
    assert.equal(res.signal, null, `${what}: killed after ${HARD_TIMEOUT_MS} ms (did not exit by itself): ${info}`)
    assert.equal(res.code, 0, `${what}: ${info}`)
    assert.ok(!res.out.error, `${what}: ${res.out.error}`)
    assert.ok(res.linger !== null && res.linger < EXIT_GRACE_MS, `${what}: lingered ${res.linger} ms after its work: ${info}`)
    return res.out
  }

  it('create, exec, upload, download, delete: exits', async () => {
    const out = check(await runChild(['create-delete']), 'create-delete')
    created.add(out.id)
    assert.equal(out.result, 'hi\n')
    assert.equal(out.download, 'x')
    assert.equal(out.socketConnected, true, `socket.io handshake failed: ${out.socketFailError}`)
  })

  it('create, stop, start and leave the sandbox (subscription still live): exits', async () => {
    const out = check(await runChild(['keep']), 'keep')
    created.add(out.id)
    assert.equal(out.socketConnected, true, `socket.io handshake failed: ${out.socketFailError}`)
    assert.equal((await daytona.get(out.id)).state, 'started')
  })

  it('get, streaming logs over a WebSocket, list: exits', async () => {
    const out = check(await runChild(['get-stream', sb.id]), 'get-stream')
    assert.equal(out.stdout, 'a\n')
    assert.equal(out.stderr, 'b\n')
    assert.ok(out.listed >= 1)
  })
})
