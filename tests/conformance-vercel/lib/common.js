'use strict'
// Shared helpers: SDK credentials that point the official SDK at the local server, raw REST calls
// for what the SDK hides (status codes, headers, bodies), the server's /_local knobs, and error
// assertions.
//
// The SDK has no base-URL option: its API client always builds https://vercel.com/api/... URLs. It
// does take a `fetch` implementation (public `WithFetchOptions` of Sandbox.create/get/list and
// Snapshot.get/list); ours rewrites that prefix to the local server's URL and leaves the request as
// it is (undici's fetch: the SDK passes an undici dispatcher along).

const assert = require('node:assert/strict')
const { fetch: undiciFetch } = require('undici')
const { APIError } = require('@vercel/sandbox')

const API_URL = process.env.VERCEL_LOCAL_URL            // http://127.0.0.1:PORT/api
if (!API_URL) throw new Error('VERCEL_LOCAL_URL is not set: run the suite through run.sh')
const BASE_URL = API_URL.replace(/\/api$/, '')
const TOKEN = process.env.VERCEL_LOCAL_TOKEN
const TEAM = process.env.VERCEL_LOCAL_TEAM
const PROJECT = process.env.VERCEL_LOCAL_PROJECT
const SDK_BASE = 'https://vercel.com/api'

const seen = []     // every URL the SDK asked for, as it asked (before the rewrite)

function localFetch(input, init) {
  const url = String(input)
  seen.push(url)
  assert.ok(url.startsWith(SDK_BASE + '/'), 'the SDK asked for ' + url)
  return undiciFetch(API_URL + url.slice(SDK_BASE.length), init)
}

// What Sandbox.create/get/list and Snapshot.get/list take: all three credentials and our fetch.
function creds(extra) {
  return { token: TOKEN, teamId: TEAM, projectId: PROJECT, fetch: localFetch, ...extra }
}

async function raw(method, path, { body, headers, query, token = TOKEN } = {}) {
  const url = new URL(API_URL + path)
  for (const [k, v] of Object.entries({ teamId: TEAM, ...query })) if (v !== undefined) url.searchParams.set(k, v)
  const h = { 'content-type': 'application/json', ...headers }
  if (token) h.authorization = 'Bearer ' + token
  const res = await undiciFetch(url, { method, headers: h, body: body === undefined ? undefined : typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body) })
  const buf = Buffer.from(await res.arrayBuffer())
  let json
  try { json = JSON.parse(buf.toString('utf8')) } catch { json = undefined }
  return { status: res.status, headers: res.headers, buf, text: buf.toString('utf8'), json }
}

async function local(method, path, body) {
  const res = await undiciFetch(BASE_URL + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  return text ? JSON.parse(text) : null
}

const stats = () => local('GET', '/_local/stats')
const resetStats = () => local('POST', '/_local/stats/reset')
const addFault = (spec) => local('POST', '/_local/faults', spec)
const clearFaults = () => local('DELETE', '/_local/faults')
const setTiming = (t) => local('PUT', '/_local/timing', t)

let counter = 0
function uniqueName(prefix) {
  counter += 1
  return `${prefix}-${process.pid}-${counter}`
}

// await assertApiError(promise, 410, 'sandbox_stopped')
async function assertApiError(promise, status, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof APIError, 'expected an APIError, got ' + (err && err.stack))
    assert.equal(err.response.status, status)
    if (code) assert.equal(err.json?.error?.code, code)
    return true
  })
}

module.exports = { API_URL, BASE_URL, TOKEN, TEAM, PROJECT, creds, raw, local, stats, resetStats, addFault, clearFaults, setTiming, uniqueName, assertApiError, seen }
