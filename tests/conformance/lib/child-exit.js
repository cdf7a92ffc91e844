'use strict'
// Run as a child process by test/09-exit.test.js. It uses the SDK the way a short script would, never
// disposes of the client, and prints one JSON line. The parent checks that the process then exits by
// itself (no socket.io connection, timer or keep-alive socket holding the event loop open).
const { Daytona } = require('@daytonaio/sdk')

async function main() {
  const mode = process.argv[2]
  const daytona = new Daytona() // from DAYTONA_API_URL / DAYTONA_API_KEY / DAYTONA_TARGET
  const out = { mode }
  if (mode === 'create-delete') {
    const sb = await daytona.create()
    const r = await sb.process.executeCommand('echo hi')
    out.result = r.result
    await sb.fs.uploadFile(Buffer.from('x'), '/home/daytona/x')
    out.download = (await sb.fs.downloadFile('/home/daytona/x')).toString()
    await sb.delete()
    out.id = sb.id
  } else if (mode === 'keep') {
    // create and leave it (the parent deletes it): a live event subscription remains
    const sb = await daytona.create()
    await sb.stop()
    await sb.start()
    out.id = sb.id
  } else if (mode === 'get-stream') {
    const sb = await daytona.get(process.argv[3])
    await sb.process.createSession('exit-test')
    const r = await sb.process.executeSessionCommand('exit-test', { command: 'echo a; echo b >&2', runAsync: true })
    let o = ''
    let e = ''
    await sb.process.getSessionCommandLogs('exit-test', r.cmdId, (s) => (o += s), (s) => (e += s))
    out.stdout = o
    out.stderr = e
    const ids = []
    for await (const s of daytona.list({ limit: 5 })) ids.push(s.id)
    out.listed = ids.length
  }
  // Give the event dispatcher a moment, then report whether its socket.io connection came up.
  const deadline = Date.now() + 3000
  while (!daytona.eventDispatcher?.isConnected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  out.socketConnected = Boolean(daytona.eventDispatcher?.isConnected)
  out.socketFailError = daytona.eventDispatcher?.failError ?? null
  process.stdout.write(JSON.stringify(out) + '\n')
  out.doneAt = Date.now()
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.stack) }) + '\n')
  process.exitCode = 2
})
