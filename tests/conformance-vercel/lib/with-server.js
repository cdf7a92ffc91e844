'use strict'
// Runs a command (the test runner) against a fresh scripts/vercel-local: starts the server on a free
// port with a temporary data directory, exports where it is (VERCEL_LOCAL_URL, VERCEL_LOCAL_TOKEN,
// VERCEL_LOCAL_TEAM, VERCEL_LOCAL_PROJECT), waits for the command, stops the server and exits with the
// command's status. The server's stderr goes to DATA/server.log; DATA is kept when the command fails
// or VERCEL_CONFORMANCE_KEEP_DATA is set.
//
//   node lib/with-server.js -- node --test test/*.test.js

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const ROOT = path.resolve(__dirname, '..', '..', '..')
const TOKEN = 'conformance-' + Math.random().toString(36).slice(2)
const TEAM = 'team_conformance'
const PROJECT = 'prj_conformance'

async function main() {
  const sep = process.argv.indexOf('--')
  const command = process.argv.slice(sep + 1)
  if (sep < 0 || command.length === 0) throw new Error('usage: with-server.js -- COMMAND...')
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'vercel-conformance.'))
  const log = fs.openSync(path.join(data, 'server.log'), 'a')
  const server = spawn(path.join(ROOT, 'scripts', 'vercel-local'),
    ['--port', '0', '--data', path.join(data, 'data'), '--token', TOKEN, '--team', TEAM,
      '--project', PROJECT, '--transition-ms', process.env.VERCEL_CONFORMANCE_TRANSITION_MS || '50'],
    { stdio: ['ignore', 'pipe', log] })
  // the first stdout line is the API base URL; the rest is drained so that the pipe never fills
  const lines = readline.createInterface({ input: server.stdout })
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not print its URL within 30 s')), 30000)
    lines.once('line', (l) => { clearTimeout(timer); resolve(l) })
    server.once('exit', (code) => reject(new Error(`the server exited (${code}) before listening`)))
  })
  if (!/^http:\/\/.*\/api$/.test(url)) throw new Error('unexpected first line from the server: ' + url)
  process.stderr.write(`conformance-vercel: server pid ${server.pid} at ${url} (data ${data})\n`)
  const env = { ...process.env, VERCEL_LOCAL_URL: url, VERCEL_LOCAL_TOKEN: TOKEN,
    VERCEL_LOCAL_TEAM: TEAM, VERCEL_LOCAL_PROJECT: PROJECT }
  // never let a developer's real Vercel credentials reach the SDK
  for (const k of ['VERCEL_OIDC_TOKEN', 'VERCEL_TOKEN', 'VERCEL_TEAM_ID', 'VERCEL_PROJECT_ID']) delete env[k]
  const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env })
  const stopChild = () => child.kill('SIGTERM')
  process.on('SIGINT', stopChild)
  process.on('SIGTERM', stopChild)
  const code = await new Promise((resolve) => child.once('exit', (c, sig) => resolve(c ?? 128)))
  server.kill('SIGTERM')
  const exited = await Promise.race([
    new Promise((resolve) => server.once('exit', () => resolve(true))),
    new Promise((resolve) => setTimeout(() => resolve(false), 5000))])
  if (!exited) server.kill('SIGKILL')
  if (code !== 0 || process.env.VERCEL_CONFORMANCE_KEEP_DATA) {
    process.stderr.write(`conformance-vercel: server data and log kept in ${data}\n`)
  } else {
    fs.rmSync(data, { recursive: true, force: true })
  }
  process.exit(code)
}

main().catch((err) => {
  process.stderr.write(`conformance-vercel: ${err.stack || err}\n`)
  process.exit(1)
})
