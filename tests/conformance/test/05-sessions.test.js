'use strict'
// Sessions: a persistent shell per session, sync and async commands, command status, logs (plain JSON
// and streamed over a WebSocket with stdout/stderr demultiplexed by the 0x01/0x02 markers) and input.
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert, sdk } = c

async function waitExit(sb, sid, cmdId, timeoutMs = 20000) {
  return c.waitFor(async () => {
    const cmd = await sb.process.getSessionCommand(sid, cmdId)
    return cmd.exitCode !== undefined && cmd.exitCode !== null ? cmd : null
  }, { timeoutMs, what: `command ${cmdId} to finish` })
}

describe('sessions', () => {
  let daytona, sb
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create()
  })
  after(async () => {
    if (sb) await c.cleanup([sb.id])
    await c.disposeClient(daytona)
  })

  it('createSession; a duplicate is a DaytonaConflictError; listSessions and getSession', async () => {
    await sb.process.createSession('s-basic')
    await c.rejectsWith(() => sb.process.createSession('s-basic'), sdk.DaytonaConflictError, { status: 409 })
    const list = await sb.process.listSessions()
    assert.ok(list.some((s) => s.sessionId === 's-basic'))
    const s = await sb.process.getSession('s-basic')
    assert.equal(s.sessionId, 's-basic')
    assert.deepEqual(s.commands || [], [])
    await c.rejectsWith(() => sb.process.getSession('no-such-session'), sdk.DaytonaNotFoundError, { status: 404 })
  })

  it('raw POST /process/session is 201 and the reserved id "entrypoint" is a 400', async () => {
    const base = `${sb.toolboxProxyUrl}/${sb.id}`
    const r = await c.rest('POST', `${base}/process/session`, { body: { sessionId: 's-raw' } })
    assert.equal(r.status, 201, r.text)
    const dup = await c.rest('POST', `${base}/process/session`, { body: { sessionId: 's-raw' } })
    assert.equal(dup.status, 409)
    assert.equal(dup.json.code, 'CONFLICT')
    const ep = await c.rest('POST', `${base}/process/session`, { body: { sessionId: 'entrypoint' } })
    assert.equal(ep.status, 400)
  })

  it('sync exec: stdout and stderr apart, exit code, state persists across commands', async () => {
    await sb.process.createSession('s-sync')
    const r1 = await sb.process.executeSessionCommand('s-sync', { command: 'export X=41; cd /tmp; f() { echo fn$1; }' })
    assert.equal(r1.exitCode, 0)
    assert.ok(r1.cmdId, 'cmdId')
    const r2 = await sb.process.executeSessionCommand('s-sync', { command: 'echo $((X+1)); pwd; f 7; echo oops >&2' })
    assert.equal(r2.exitCode, 0)
    assert.equal(r2.stdout, '42\n/tmp\nfn7\n')
    assert.equal(r2.stderr, 'oops\n')
    // output is the raw log with the 3-byte markers
    assert.ok(r2.output.includes('\x01\x01\x0142\n'), JSON.stringify(r2.output))
    assert.ok(r2.output.includes('\x02\x02\x02oops\n'), JSON.stringify(r2.output))
    const r3 = await sb.process.executeSessionCommand('s-sync', { command: '(exit 7)' })
    assert.equal(r3.exitCode, 7)
    // a final partial line gets its newline
    const r4 = await sb.process.executeSessionCommand('s-sync', { command: 'printf "no-newline"' })
    assert.equal(r4.stdout, 'no-newline\n')
    // getSession lists the commands with their exit codes
    const s = await sb.process.getSession('s-sync')
    const byId = Object.fromEntries(s.commands.map((x) => [x.id, x]))
    assert.equal(byId[r2.cmdId].exitCode, 0)
    assert.equal(byId[r3.cmdId].exitCode, 7)
    assert.equal(byId[r3.cmdId].command, '(exit 7)')
  })

  it('the session shell starts in the work dir', async () => {
    await sb.process.createSession('s-cwd')
    const r = await sb.process.executeSessionCommand('s-cwd', { command: 'pwd' })
    assert.equal(r.stdout, '/home/daytona\n')
  })

  it('async exec: 202 with a cmdId; exitCode absent while running, then set; plain logs', async () => {
    await sb.process.createSession('s-async')
    const t0 = Date.now()
    const r = await sb.process.executeSessionCommand('s-async', { command: 'echo start; sleep 1.5; echo end; echo e >&2; (exit 5)', runAsync: true })
    assert.ok(Date.now() - t0 < 1000, 'async exec returns at once')
    assert.ok(r.cmdId)
    assert.equal(r.exitCode ?? undefined, undefined)
    const running = await sb.process.getSessionCommand('s-async', r.cmdId)
    assert.equal(running.id, r.cmdId)
    assert.ok(running.command.includes('sleep 1.5'))
    assert.ok(!('exitCode' in running) || running.exitCode === undefined, `exitCode absent while running: ${JSON.stringify(running)}`)
    // partial logs while running
    await c.waitFor(async () => (await sb.process.getSessionCommandLogs('s-async', r.cmdId)).stdout === 'start\n',
      { what: 'first line in the logs' })
    const done = await waitExit(sb, 's-async', r.cmdId)
    assert.equal(done.exitCode, 5)
    const logs = await sb.process.getSessionCommandLogs('s-async', r.cmdId)
    assert.equal(logs.stdout, 'start\nend\n')
    assert.equal(logs.stderr, 'e\n')
    assert.ok(logs.output.includes('\x01\x01\x01start\n'))
  })

  it('raw async exec returns 202 with null fields; raw logs are JSON for a current SDK version', async () => {
    const base = `${sb.toolboxProxyUrl}/${sb.id}`
    const hdr = { 'X-Daytona-SDK-Version': '0.190.0' }
    const r = await c.rest('POST', `${base}/process/session/s-async/exec`, { body: { command: 'echo hi; echo ho >&2', runAsync: true }, headers: hdr })
    assert.equal(r.status, 202, r.text)
    assert.equal(r.json.exitCode, null)
    assert.equal(r.json.output, null)
    await waitExit(sb, 's-async', r.json.cmdId)
    const logs = await c.rest('GET', `${base}/process/session/s-async/command/${r.json.cmdId}/logs`, { headers: hdr })
    assert.equal(logs.status, 200)
    assert.match(logs.headers.get('content-type'), /application\/json/)
    assert.equal(logs.json.stdout, 'hi\n')
    assert.equal(logs.json.stderr, 'ho\n')
    // without a version header: text/plain with the markers stripped (combined)
    const plain = await c.rest('GET', `${base}/process/session/s-async/command/${r.json.cmdId}/logs`)
    assert.equal(plain.status, 200)
    assert.match(plain.headers.get('content-type'), /text\/plain/)
    assert.ok(!plain.text.includes('\x01'), JSON.stringify(plain.text))
    assert.deepEqual(plain.text.split('\n').filter(Boolean).sort(), ['hi', 'ho'])
  })

  it('streaming logs: callbacks get stdout and stderr separately, live, until the command ends', async () => {
    await sb.process.createSession('s-stream')
    const cmd = 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.4; done; echo last'
    const r = await sb.process.executeSessionCommand('s-stream', { command: cmd, runAsync: true })
    const out = []
    const err = []
    let firstAt = 0
    const t0 = Date.now()
    await sb.process.getSessionCommandLogs('s-stream', r.cmdId, (s) => {
      firstAt = firstAt || Date.now()
      out.push(s)
    }, (s) => {
      firstAt = firstAt || Date.now()
      err.push(s)
    })
    const endAt = Date.now()
    assert.equal(out.join(''), 'out1\nout2\nout3\nlast\n')
    assert.equal(err.join(''), 'err1\nerr2\nerr3\n')
    assert.ok(firstAt && endAt - firstAt >= 700, `data arrived live (first after ${firstAt - t0} ms, end after ${endAt - t0} ms)`)
    const done = await sb.process.getSessionCommand('s-stream', r.cmdId)
    assert.equal(done.exitCode, 0)
  })

  it('streaming logs of a finished command deliver everything and end', async () => {
    const r = await sb.process.executeSessionCommand('s-stream', { command: 'echo a; echo b >&2' })
    const out = []
    const err = []
    await sb.process.getSessionCommandLogs('s-stream', r.cmdId, (s) => out.push(s), (s) => err.push(s))
    assert.equal(out.join(''), 'a\n')
    assert.equal(err.join(''), 'b\n')
  })

  it('streaming logs with lots of output: the SDK callbacks get every line, in its own stream', async () => {
    const r = await sb.process.executeSessionCommand('s-stream', {
      command: 'for i in $(seq 1 2000); do echo "o$i"; echo "e$i" >&2; done',
      runAsync: true,
    })
    const out = []
    const err = []
    await sb.process.getSessionCommandLogs('s-stream', r.cmdId, (s) => out.push(s), (s) => err.push(s))
    // SDK 0.218.0 defect (utils/Stream.js stdDemuxStream): when a WebSocket frame ends exactly after a
    // complete 3-byte marker, that marker is not recognised and its line goes to the other callback,
    // marker bytes included. The daemon may cut frames anywhere, so this happens against real Daytona;
    // the local server never ends a frame with a complete marker (partial ones still occur), so the
    // official SDK must see every line in the right stream here.
    const seq = (p) => Array.from({ length: 2000 }, (_, i) => `${p}${i + 1}\n`).join('')
    assert.equal(out.join(''), seq('o'), 'stdout callback')
    assert.equal(err.join(''), seq('e'), 'stderr callback')
  })

  it('streaming logs over a raw WebSocket: binary frames <= 1024 bytes, same bytes as the log, close 1000', async () => {
    const WebSocket = require('ws')
    const r = await sb.process.executeSessionCommand('s-stream', {
      command: 'for i in $(seq 1 3000); do echo "o$i"; echo "e$i" >&2; done; sleep 0.3; echo tail',
      runAsync: true,
    })
    const url = `${sb.toolboxProxyUrl.replace(/^http/, 'ws')}/${sb.id}/process/session/s-stream/command/${r.cmdId}/logs?follow=true`
    const ws = new WebSocket(url, [], { headers: { Authorization: `Bearer ${c.API_KEY}`, 'X-Daytona-SDK-Version': '0.190.0' } })
    const frames = []
    let textFrames = 0
    ws.on('message', (data, isBinary) => {
      if (!isBinary) textFrames++
      frames.push(Buffer.from(data))
    })
    const code = await new Promise((resolve, reject) => {
      ws.on('close', (cd) => resolve(cd))
      ws.on('error', reject)
    })
    assert.equal(code, 1000)
    assert.equal(textFrames, 0, 'binary frames only')
    assert.ok(frames.every((f) => f.length > 0 && f.length <= 1024), `frame sizes ${frames.map((f) => f.length)}`)
    const raw = Buffer.concat(frames).toString('latin1')
    const logs = await sb.process.getSessionCommandLogs('s-stream', r.cmdId)
    assert.equal(raw, Buffer.from(logs.output, 'utf8').toString('latin1'), 'the stream is the raw log, markers included')
    // demultiplex with carry-over, as a correct client must
    const demux = { 1: '', 2: '' }
    for (const m of raw.matchAll(/([\x01\x02])\1\1([^\n]*\n)/g)) demux[m[1].charCodeAt(0)] += m[2]
    assert.equal(demux[1], logs.stdout)
    assert.equal(demux[2], logs.stderr)
    assert.ok(logs.stdout.endsWith('o3000\ntail\n'))
  })

  it('sendSessionCommandInput feeds an async command; input is echoed unless suppressed', async () => {
    assert.equal(typeof sb.process.sendSessionCommandInput, 'function')
    await sb.process.createSession('s-input')
    const r = await sb.process.executeSessionCommand('s-input', { command: 'read line; echo "got:$line"', runAsync: true })
    await c.sleep(200)
    await sb.process.sendSessionCommandInput('s-input', r.cmdId, 'hello world')
    const done = await waitExit(sb, 's-input', r.cmdId)
    assert.equal(done.exitCode, 0)
    const logs = await sb.process.getSessionCommandLogs('s-input', r.cmdId)
    // The contract does not fix the order of the echo and the command's output; the local server echoes
    // before writing to stdin, as a terminal would.
    assert.equal(logs.stdout, 'hello world\ngot:hello world\n')
    // a completed command: 410 Gone
    await c.rejectsWith(() => sb.process.sendSessionCommandInput('s-input', r.cmdId, 'late'), sdk.DaytonaGoneError, { status: 410 })

    const r2 = await sb.process.executeSessionCommand('s-input', {
      command: 'read a; read b; echo "$b-$a"', runAsync: true, suppressInputEcho: true,
    })
    await sb.process.sendSessionCommandInput('s-input', r2.cmdId, 'first\n')
    await sb.process.sendSessionCommandInput('s-input', r2.cmdId, 'second')
    await waitExit(sb, 's-input', r2.cmdId)
    const logs2 = await sb.process.getSessionCommandLogs('s-input', r2.cmdId)
    assert.equal(logs2.stdout, 'second-first\n')
  })

  it('commands queue: a sync exec waits behind a running async one', async () => {
    await sb.process.createSession('s-queue')
    const a = await sb.process.executeSessionCommand('s-queue', { command: 'sleep 1; echo A > /tmp/queue.txt', runAsync: true })
    const b = await sb.process.executeSessionCommand('s-queue', { command: 'cat /tmp/queue.txt' })
    assert.equal(b.stdout, 'A\n')
    assert.equal((await sb.process.getSessionCommand('s-queue', a.cmdId)).exitCode, 0)
  })

  it('errors: exec on an unknown session is a 500 (contract quirk), unknown command 404', async () => {
    await c.rejectsWith(() => sb.process.executeSessionCommand('no-such-session', { command: 'true' }),
      sdk.DaytonaInternalServerError, { status: 500 })
    await c.rejectsWith(() => sb.process.getSessionCommand('s-sync', 'no-such-command'), sdk.DaytonaNotFoundError, { status: 404 })
  })

  it('deleteSession kills its running command and removes the session', async () => {
    await sb.process.createSession('s-del')
    const r = await sb.process.executeSessionCommand('s-del', { command: 'echo $$ > /tmp/sdel.pid; sleep 60', runAsync: true })
    await c.waitFor(async () => (await sb.process.executeCommand('test -s /tmp/sdel.pid && echo y')).result === 'y\n', { what: 'pid' })
    assert.ok(r.cmdId)
    const pid = (await sb.process.executeCommand('cat /tmp/sdel.pid')).result.trim()
    await sb.process.deleteSession('s-del')
    await c.rejectsWith(() => sb.process.getSession('s-del'), sdk.DaytonaNotFoundError, { status: 404 })
    await c.waitFor(async () => (await sb.process.executeCommand(`kill -0 ${pid} 2>/dev/null || echo dead`)).result === 'dead\n',
      { timeoutMs: 10000, what: 'session shell to die' })
    assert.ok(!(await sb.process.listSessions()).some((s) => s.sessionId === 's-del'))
  })
})
