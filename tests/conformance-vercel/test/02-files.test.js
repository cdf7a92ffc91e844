'use strict'
// Files through the SDK: writeFiles (a gzip'd tar), readFile / readFileToBuffer, mkDir.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { Sandbox } = require('@vercel/sandbox')
const { creds, uniqueName, raw, assertApiError } = require('../lib/common')

let sandbox

before(async () => { sandbox = await Sandbox.create(creds({ name: uniqueName('files') })) })
after(async () => { if (sandbox) await sandbox.delete() })

async function sh(script) {
  const r = await sandbox.runCommand('sh', ['-c', script])
  assert.equal(r.exitCode, 0, await r.stderr())
  return r.stdout()
}

const binary = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 7) & 255))
// > 100 bytes and not splittable into ustar's prefix/name: tar-stream writes a PAX header
const longDir = 'deep/' + 'd'.repeat(120)
const longName = `${longDir}/ünïcödé-${'n'.repeat(90)}.txt`

test('writeFiles: absolute and relative paths, binary content, modes, parents created, PAX names', async () => {
  await sandbox.writeFiles([
    { path: '/vercel/sandbox/a.txt', content: 'hello\n' },
    { path: 'rel/dir/b.bin', content: binary, mode: 0o750 },
    { path: longName, content: 'long' },
    { path: '/tmp/t.txt', content: Buffer.from('in tmp') },
    { path: 'price-€.txt', content: 'euro' },
  ])
  assert.equal(await sh('cat /vercel/sandbox/a.txt'), 'hello\n')
  assert.equal(await sh('stat -c "%a %U %s" /vercel/sandbox/a.txt rel/dir/b.bin rel/dir'),
    '644 ubuntu 6\n750 ubuntu 70000\n755 ubuntu 4096\n')
  assert.equal(await sh(`cat '${longName}'`), 'long')
  assert.equal(await sh('cat /tmp/t.txt'), 'in tmp')
})

test('readFileToBuffer and readFile give the exact bytes; a missing file is null', async () => {
  const buf = await sandbox.readFileToBuffer({ path: 'rel/dir/b.bin' })
  assert.ok(buf.equals(binary))
  const stream = await sandbox.readFile({ path: '/vercel/sandbox/a.txt' })
  const chunks = []
  for await (const c of stream) chunks.push(c)
  assert.equal(Buffer.concat(chunks).toString(), 'hello\n')
  assert.equal((await sandbox.readFileToBuffer({ path: longName })).toString(), 'long')
  assert.equal((await sandbox.readFileToBuffer({ path: 'price-€.txt' })).toString(), 'euro')
  assert.equal(await sandbox.readFileToBuffer({ path: 'nope.txt' }), null)
  assert.equal(await sandbox.readFileToBuffer({ path: 'a.txt/below' }), null)
  assert.equal((await sandbox.readFileToBuffer({ path: 'b.bin', cwd: '/vercel/sandbox/rel/dir' })).length, 70000)
})

test('writeFiles replaces a file whole', async () => {
  await sandbox.writeFiles([{ path: 'a.txt', content: 'x' }])
  assert.equal((await sandbox.readFileToBuffer({ path: 'a.txt' })).toString(), 'x')
})

test('mkDir makes one directory, owned by the default user; an existing one or a missing parent is an error', async () => {
  await sandbox.mkDir('made')
  assert.equal(await sh('stat -c "%F %U" made'), 'directory ubuntu\n')
  await assertApiError(sandbox.mkDir('made'), 400, 'bad_request')
  await assertApiError(sandbox.mkDir('no/such/parent'), 400, 'bad_request')
  await sandbox.mkDir('/vercel/sandbox/made/inner')
  assert.equal(await sh('test -d made/inner && echo ok'), 'ok\n')
})

test('fs/mkdir with recursive:true makes the parents', async () => {
  const sid = sandbox.currentSession().sessionId
  const r = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/mkdir`, { body: { path: 'p/q/r', recursive: true } })
  assert.equal(r.status, 200)
  assert.deepEqual(r.json, {})
  assert.equal(await sh('test -d /vercel/sandbox/p/q/r && echo ok'), 'ok\n')
})

test('fs/read: raw bytes as application/octet-stream; 404 for a missing file; 400 for a directory', async () => {
  const sid = sandbox.currentSession().sessionId
  const r = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/read`, { body: { path: '/vercel/sandbox/rel/dir/b.bin' } })
  assert.equal(r.status, 200)
  assert.match(r.headers.get('content-type'), /^application\/octet-stream/)
  assert.ok(r.buf.equals(binary))
  const missing = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/read`, { body: { path: 'missing' } })
  assert.equal(missing.status, 404)
  assert.equal(missing.json.error.code, 'not_found')
  const dir = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/read`, { body: { path: '/vercel' } })
  assert.equal(dir.status, 400)
})

test('fs/write: an archive that is not gzip is refused and writes nothing', async () => {
  const sid = sandbox.currentSession().sessionId
  const r = await raw('POST', `/v2/sandboxes/sessions/${sid}/fs/write`, { body: Buffer.from('not a tarball'), headers: { 'content-type': 'application/gzip', 'x-cwd': '/' } })
  assert.equal(r.status, 400)
  assert.equal(r.json.error.code, 'bad_request')
})
