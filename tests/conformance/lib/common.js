'use strict'
// Shared helpers for the conformance suite: the SDK client, direct REST calls for what the SDK hides
// (status codes, raw bodies), error assertions, polling and cleanup. Every test file runs in its own
// node process (node --test), so each one builds its own client and disposes of it in after().

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const sdk = require('@daytonaio/sdk')

const API_URL = process.env.DAYTONA_API_URL
const API_KEY = process.env.DAYTONA_API_KEY
const TARGET = process.env.DAYTONA_TARGET
if (!API_URL || !API_KEY) {
  throw new Error('DAYTONA_API_URL and DAYTONA_API_KEY must be set (run tests/conformance/run.sh)')
}
// http://127.0.0.1:PORT (the /_local knobs live at the server root, not under /api)
const ORIGIN = new URL(API_URL).origin

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

function newClient(extra = {}) {
  // Explicit config (not only env) so that a stray .env file in the cwd cannot redirect the client.
  return new sdk.Daytona({ apiUrl: API_URL, apiKey: API_KEY, target: TARGET, ...extra })
}

async function disposeClient(daytona) {
  if (daytona) await daytona[Symbol.asyncDispose]()
}

function uid(prefix = 'conf') {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`
}

// Direct REST call against the API (path relative to .../api) or an absolute URL.
// Returns {status, headers, text, json} and never throws on HTTP errors.
async function rest(method, path, { body, headers = {}, auth = true, raw = false } = {}) {
  const url = /^https?:/.test(path) ? path : API_URL.replace(/\/$/, '') + path
  const h = { ...headers }
  if (auth) h.Authorization = `Bearer ${API_KEY}`
  let payload
  if (body !== undefined) {
    if (raw) payload = body
    else {
      payload = JSON.stringify(body)
      h['Content-Type'] = 'application/json'
    }
  }
  const res = await fetch(url, { method, headers: h, body: payload })
  const buf = Buffer.from(await res.arrayBuffer())
  const text = buf.toString('utf8')
  let json
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json, buf }
}

// Calls a /_local knob (no auth, server root).
async function local(method, path, body) {
  return rest(method, ORIGIN + path, { body, auth: false })
}

// Asserts that `fn` rejects with an instance of `ErrorClass` (and the given HTTP status when set).
async function rejectsWith(fn, ErrorClass, { status, message } = {}) {
  let err
  try {
    await (typeof fn === 'function' ? fn() : fn)
  } catch (e) {
    err = e
  }
  assert.ok(err, `expected ${ErrorClass.name}, but the call succeeded`)
  assert.ok(
    err instanceof ErrorClass,
    `expected ${ErrorClass.name}, got ${err && err.constructor && err.constructor.name}: ` +
      `${err && err.message} (statusCode=${err && err.statusCode})`,
  )
  if (status !== undefined) assert.equal(err.statusCode, status, `status code of ${err.message}`)
  if (message !== undefined) assert.match(String(err.message), message)
  return err
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Polls `fn` until it returns a truthy value or the deadline passes.
async function waitFor(fn, { timeoutMs = 30000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    last = await fn()
    if (last) return last
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}

// Runs `worker(item)` over `items` with at most `n` in flight.
async function pool(items, n, worker) {
  const out = new Array(items.length)
  let next = 0
  async function run() {
    while (next < items.length) {
      const i = next++
      out[i] = await worker(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run))
  return out
}

// Deletes sandboxes created by a test file (best effort, ignores 404/409).
async function cleanup(ids) {
  await pool([...ids], 8, async (id) => {
    try {
      await rest('DELETE', `/sandbox/${id}`)
    } catch {
      /* ignore */
    }
  })
}

// Waits until GET /sandbox/{id} is a 404 (the sandbox is destroyed and invisible).
async function waitGone(id, timeoutMs = 30000) {
  await waitFor(async () => (await rest('GET', `/sandbox/${id}`)).status === 404, {
    timeoutMs,
    what: `sandbox ${id} to disappear`,
  })
}

module.exports = {
  sdk,
  assert,
  API_URL,
  API_KEY,
  TARGET,
  ORIGIN,
  UUID_V4,
  ISO_MS,
  newClient,
  disposeClient,
  uid,
  rest,
  local,
  rejectsWith,
  sleep,
  waitFor,
  pool,
  cleanup,
  waitGone,
}
