'use strict'
// Toolbox endpoints daytonafs relies on that the SDK never calls (ranged GET /files/download, single
// POST /files/upload), and the raw status codes and bodies behind the SDK's errors (CONTRACT 3.x).
const { describe, it, before, after } = require('node:test')
const crypto = require('node:crypto')
const c = require('../lib/common')
const { assert } = c

describe('raw toolbox endpoints', () => {
  let daytona, sb, base
  const data = crypto.randomBytes(100000)
  const H = '/home/daytona/raw'
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create()
    base = `${sb.toolboxProxyUrl}/${sb.id}`
    await sb.fs.uploadFile(data, `${H}/data.bin`)
  })
  after(async () => {
    if (sb) await c.cleanup([sb.id])
    await c.disposeClient(daytona)
  })

  const q = (p) => encodeURIComponent(p)
  const get = (p, headers) => c.rest('GET', `${base}${p}`, { headers })

  it('GET /files/download: 200 with the whole file and the contract headers', async () => {
    const r = await get(`/files/download?path=${q(`${H}/data.bin`)}`)
    assert.equal(r.status, 200)
    assert.ok(r.buf.equals(data))
    assert.equal(r.headers.get('content-type'), 'application/octet-stream')
    assert.equal(r.headers.get('content-length'), String(data.length))
    assert.equal(r.headers.get('accept-ranges'), 'bytes')
    assert.ok(r.headers.get('last-modified'), 'Last-Modified')
    assert.match(r.headers.get('content-disposition'), /^attachment; filename="data\.bin"/)
  })

  it('GET /files/download with Range: 206 + Content-Range for first, middle, suffix and open ranges', async () => {
    const n = data.length
    const cases = [
      ['bytes=0-9', 0, 9],
      ['bytes=1000-1999', 1000, 1999],
      ['bytes=-5', n - 5, n - 1],
      [`bytes=${n - 10}-`, n - 10, n - 1],
      [`bytes=${n - 10}-${n + 1000}`, n - 10, n - 1],
    ]
    for (const [range, from, to] of cases) {
      const r = await get(`/files/download?path=${q(`${H}/data.bin`)}`, { Range: range })
      assert.equal(r.status, 206, range)
      assert.equal(r.headers.get('content-range'), `bytes ${from}-${to}/${n}`, range)
      assert.equal(r.headers.get('content-length'), String(to - from + 1), range)
      assert.ok(r.buf.equals(data.subarray(from, to + 1)), `${range} body`)
    }
  })

  it('GET /files/download: unsatisfiable range is 416 with Content-Range bytes */size', async () => {
    const r = await get(`/files/download?path=${q(`${H}/data.bin`)}`, { Range: `bytes=${data.length}-` })
    assert.equal(r.status, 416)
    assert.equal(r.headers.get('content-range'), `bytes */${data.length}`)
  })

  it('GET /files/download: several ranges give multipart/byteranges', async () => {
    const r = await get(`/files/download?path=${q(`${H}/data.bin`)}`, { Range: 'bytes=0-1,10-11' })
    assert.equal(r.status, 206)
    assert.match(r.headers.get('content-type'), /^multipart\/byteranges; boundary=/)
    const text = r.buf.toString('latin1')
    assert.match(text, /Content-Range: bytes 0-1\/100000/)
    assert.match(text, /Content-Range: bytes 10-11\/100000/)
  })

  it('GET /files/download: If-Modified-Since gives 304; a directory 400; missing 404 (empty bodies)', async () => {
    const full = await get(`/files/download?path=${q(`${H}/data.bin`)}`)
    const lm = full.headers.get('last-modified')
    const nm = await get(`/files/download?path=${q(`${H}/data.bin`)}`, { 'If-Modified-Since': lm })
    assert.equal(nm.status, 304)
    const dir = await get(`/files/download?path=${q(H)}`)
    assert.equal(dir.status, 400)
    assert.equal(dir.text, '')
    const miss = await get(`/files/download?path=${q(`${H}/missing`)}`)
    assert.equal(miss.status, 404)
    assert.equal(miss.text, '')
    // relative to the work dir
    const rel = await get(`/files/download?path=${q('raw/data.bin')}`, { Range: 'bytes=0-3' })
    assert.equal(rel.status, 206)
    assert.ok(rel.buf.equals(data.subarray(0, 4)))
  })

  it('POST /files/upload (single multipart "file"): 200, creates parents, overwrites; no path is 400', async () => {
    const up = async (p, body) => {
      const fd = new FormData()
      fd.append('file', new Blob([body]), 'ignored-name')
      return c.rest('POST', `${base}/files/upload?path=${q(p)}`, { body: fd, raw: true })
    }
    let r = await up(`${H}/up/new/dir/file.txt`, 'first content')
    assert.equal(r.status, 200, r.text)
    r = await up(`${H}/up/new/dir/file.txt`, 'second')
    assert.equal(r.status, 200)
    assert.equal((await sb.fs.downloadFile(`${H}/up/new/dir/file.txt`)).toString(), 'second')
    const fd = new FormData()
    fd.append('file', new Blob(['x']), 'x')
    const nop = await c.rest('POST', `${base}/files/upload`, { body: fd, raw: true })
    assert.equal(nop.status, 400)
    const ontoDir = await up(H, 'x')
    assert.equal(ontoDir.status, 400)
  })

  it('POST /files/bulk-upload: {files:[{path,bytes}]}; partial failure is 400 {errors, files}', async () => {
    const fd = new FormData()
    fd.append('files[0].path', `${H}/bulk/a.txt`)
    fd.append('files[0].file', new Blob(['aaa']), 'whatever')
    fd.append('files[1].path', '/usr/conformance-denied/b.txt')
    fd.append('files[1].file', new Blob(['bb']), 'whatever')
    const r = await c.rest('POST', `${base}/files/bulk-upload`, { body: fd, raw: true })
    assert.equal(r.status, 400, r.text)
    assert.equal(r.json.errors.length, 1)
    assert.match(r.json.errors[0], /^\/usr\/conformance-denied\/b\.txt: /)
    assert.deepEqual(r.json.files, [{ path: `${H}/bulk/a.txt`, bytes: 3 }])
    const ok = new FormData()
    ok.append('files[x].path', `${H}/bulk/c.txt`)
    ok.append('files[x].file', new Blob(['cccc']), 'c')
    const r2 = await c.rest('POST', `${base}/files/bulk-upload`, { body: ok, raw: true })
    assert.equal(r2.status, 200, r2.text)
    assert.deepEqual(r2.json, { files: [{ path: `${H}/bulk/c.txt`, bytes: 4 }] })
    const bad = await c.rest('POST', `${base}/files/bulk-upload`, { body: 'not multipart', raw: true, headers: { 'Content-Type': 'text/plain' } })
    assert.equal(bad.status, 400)
    assert.deepEqual(bad.json, { errors: ['invalid multipart form'] })
  })

  it('POST /files/bulk-download: an empty list is 400 JSON; parts use the fixed boundary', async () => {
    const r = await c.rest('POST', `${base}/files/bulk-download`, { body: { paths: [] } })
    assert.equal(r.status, 400)
    assert.ok(r.json && typeof r.json.error === 'string', r.text)
    const ok = await c.rest('POST', `${base}/files/bulk-download`, { body: { paths: [`${H}/bulk/c.txt`, `${H}/nope`] } })
    assert.equal(ok.status, 200)
    assert.equal(ok.headers.get('content-type'), 'multipart/form-data; boundary=DAYTONA-FILE-BOUNDARY')
    assert.ok(ok.text.endsWith('--DAYTONA-FILE-BOUNDARY--\r\n') || ok.text.endsWith('--DAYTONA-FILE-BOUNDARY--'), 'closing boundary')
    assert.match(ok.text, /Content-Disposition: form-data; name="file"; filename="\/home\/daytona\/raw\/bulk\/c\.txt"/)
    assert.match(ok.text, /Content-Disposition: form-data; name="error"; filename="\/home\/daytona\/raw\/nope"/)
    assert.match(ok.text, /"code":"FILE_NOT_FOUND"/)
  })

  it('fs errors are bare status codes with empty bodies; success codes 201/204/200', async () => {
    const info = await get(`/files/info?path=${q(`${H}/missing`)}`)
    assert.equal(info.status, 404)
    assert.equal(info.text, '')
    const noParam = await get('/files/info')
    assert.equal(noParam.status, 400)
    const mk = await c.rest('POST', `${base}/files/folder?path=${q(`${H}/mk`)}&mode=755`)
    assert.equal(mk.status, 201)
    assert.equal(mk.text, '')
    const mv = await c.rest('POST', `${base}/files/move?source=${q(`${H}/mk`)}&destination=${q(`${H}/mk2`)}`)
    assert.equal(mv.status, 200)
    const conflict = await c.rest('POST', `${base}/files/move?source=${q(`${H}/bulk/c.txt`)}&destination=${q(`${H}/bulk/a.txt`)}`)
    assert.equal(conflict.status, 409)
    assert.equal(conflict.text, '')
    const del = await c.rest('DELETE', `${base}/files?path=${q(`${H}/mk2`)}`)
    assert.equal(del.status, 400, 'a directory needs recursive=true')
    const del2 = await c.rest('DELETE', `${base}/files?path=${q(`${H}/mk2`)}&recursive=true`)
    assert.equal(del2.status, 204)
    const ls = await get(`/files/?path=${q(H)}`)
    assert.equal(ls.status, 200, 'GET /files/ (trailing slash) is routed too')
    const perm = await c.rest('POST', `${base}/files/permissions?path=${q(`${H}/bulk/c.txt`)}&mode=640`)
    assert.equal(perm.status, 200)
    assert.equal((await sb.fs.getFileDetails(`${H}/bulk/c.txt`)).permissions, '0640')
  })

  it("query decoding: '+' is a space, %2B is a plus", async () => {
    await sb.fs.uploadFile(Buffer.from('space'), `${H}/p q`)
    await sb.fs.uploadFile(Buffer.from('plus'), `${H}/p+q`)
    const a = await get(`/files/download?path=${H}/p+q`)
    assert.equal(a.text, 'space')
    const b = await get(`/files/download?path=${H}/p%2Bq`)
    assert.equal(b.text, 'plus')
  })

  it('unknown toolbox routes are 404 "404 page not found"; HEAD is not routed', async () => {
    const r = await get('/no/such/route')
    assert.equal(r.status, 404)
    assert.equal(r.text, '404 page not found')
    const h = await c.rest('HEAD', `${base}/files/download?path=${q(`${H}/data.bin`)}`)
    assert.equal(h.status, 404)
  })

  it('GET /version, /work-dir, /user-home-dir, /project-dir', async () => {
    const v = await get('/version')
    assert.equal(v.status, 200)
    assert.equal(typeof v.json.version, 'string')
    assert.deepEqual((await get('/work-dir')).json, { dir: '/home/daytona' })
    assert.deepEqual((await get('/user-home-dir')).json, { dir: '/home/daytona' })
    assert.deepEqual((await get('/project-dir')).json, { dir: '/home/daytona' })
  })

  it('POST /process/execute: 408 JSON on timeout; 400 JSON on a bad body', async () => {
    const r = await c.rest('POST', `${base}/process/execute`, { body: { command: 'sleep 5', timeout: 1 } })
    assert.equal(r.status, 408)
    assert.equal(r.json.code, 'REQUEST_TIMEOUT')
    assert.equal(r.json.statusCode, 408)
    assert.equal(r.json.message, 'request timeout: command execution timeout')
    const bad = await c.rest('POST', `${base}/process/execute`, { body: '{not json', raw: true, headers: { 'Content-Type': 'application/json' } })
    assert.equal(bad.status, 400)
    assert.equal(bad.json.code, 'BAD_REQUEST')
  })
})
