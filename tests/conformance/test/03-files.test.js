'use strict'
// The toolbox file API through sandbox.fs: uploads (bulk-upload), downloads (bulk-download), listing,
// stat, mkdir, move, chmod, delete, grep (find) and glob (search).
const { describe, it, before, after } = require('node:test')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const c = require('../lib/common')
const { assert, sdk } = c

const W = '/home/daytona/conf'
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex')

describe('file system', () => {
  let daytona, sb
  let tmp
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create()
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'conf-files-'))
  })
  after(async () => {
    if (sb) await c.cleanup([sb.id])
    await c.disposeClient(daytona)
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  it('uploads and downloads a small text file (absolute path)', async () => {
    await sb.fs.uploadFile(Buffer.from('hello, sandbox\n'), `${W}/hello.txt`)
    const got = await sb.fs.downloadFile(`${W}/hello.txt`)
    assert.ok(Buffer.isBuffer(got))
    assert.equal(got.toString('utf8'), 'hello, sandbox\n')
  })

  it('relative paths resolve against the work dir /home/daytona', async () => {
    await sb.fs.uploadFile(Buffer.from('rel'), 'conf/rel.txt')
    assert.equal((await sb.fs.downloadFile(`${W}/rel.txt`)).toString(), 'rel')
    assert.equal((await sb.fs.downloadFile('conf/rel.txt')).toString(), 'rel')
    const info = await sb.fs.getFileDetails('conf/rel.txt')
    assert.equal(info.name, 'rel.txt')
  })

  it('binary round trip with all 256 byte values', async () => {
    const buf = Buffer.alloc(256 * 4)
    for (let i = 0; i < buf.length; i++) buf[i] = i % 256
    // Also the reverse order and CR/LF/boundary-like sequences that trip naive multipart parsers.
    // (Not the exact boundary: bulk-download uses the fixed boundary DAYTONA-FILE-BOUNDARY, so a file
    // containing "\r\n--DAYTONA-FILE-BOUNDARY" cannot be downloaded by the SDK from the real daemon either.)
    const tricky = Buffer.concat([buf, Buffer.from('\r\n--DAYTONA-FILE-BOUNDAR\r\n\r\n--\r\n--'), Buffer.from(buf).reverse()])
    await sb.fs.uploadFile(tricky, `${W}/bin/all-bytes.bin`)
    const got = await sb.fs.downloadFile(`${W}/bin/all-bytes.bin`)
    assert.equal(got.length, tricky.length)
    assert.ok(got.equals(tricky), 'binary content differs')
    const info = await sb.fs.getFileDetails(`${W}/bin/all-bytes.bin`)
    assert.equal(info.size, tricky.length)
  })

  it('empty file round trip', async () => {
    await sb.fs.uploadFile(Buffer.alloc(0), `${W}/empty`)
    const got = await sb.fs.downloadFile(`${W}/empty`)
    assert.equal(got.length, 0)
    assert.equal((await sb.fs.getFileDetails(`${W}/empty`)).size, 0)
  })

  it('5 MiB random file round trip (buffer and local file paths)', async () => {
    const big = crypto.randomBytes(5 * 1024 * 1024)
    await sb.fs.uploadFile(big, `${W}/big.bin`)
    const got = await sb.fs.downloadFile(`${W}/big.bin`)
    assert.equal(got.length, big.length)
    assert.equal(sha(got), sha(big))
    // From a local path, to a local path.
    const src = path.join(tmp, 'src.bin')
    const dst = path.join(tmp, 'out', 'dst.bin')
    fs.writeFileSync(src, big)
    await sb.fs.uploadFile(src, `${W}/big2.bin`)
    await sb.fs.downloadFile(`${W}/big2.bin`, dst)
    assert.equal(sha(fs.readFileSync(dst)), sha(big))
    // The command side sees the same bytes.
    const r = await sb.process.executeCommand(`sha256sum ${W}/big.bin ${W}/big2.bin`)
    assert.equal(r.exitCode, 0)
    const sums = r.result.trim().split('\n').map((l) => l.split(/\s+/)[0])
    assert.deepEqual(sums, [sha(big), sha(big)])
  })

  it('streaming upload and download (uploadFileStream / downloadFileStream)', async () => {
    const { Readable } = require('node:stream')
    const data = crypto.randomBytes(300 * 1024)
    await sb.fs.uploadFileStream(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), `${W}/stream.bin`)
    const stream = await sb.fs.downloadFileStream(`${W}/stream.bin`)
    const chunks = []
    for await (const ch of stream) chunks.push(ch)
    assert.ok(Buffer.concat(chunks).equals(data))
  })

  it('upload creates parent directories and overwrites existing files', async () => {
    await sb.fs.uploadFile(Buffer.from('first version, long'), `${W}/deep/a/b/c/file.txt`)
    await sb.fs.uploadFile(Buffer.from('second'), `${W}/deep/a/b/c/file.txt`)
    assert.equal((await sb.fs.downloadFile(`${W}/deep/a/b/c/file.txt`)).toString(), 'second')
    const info = await sb.fs.getFileDetails(`${W}/deep/a/b`)
    assert.equal(info.isDir, true)
  })

  it('uploadFiles / downloadFiles: several files in one request, per-file errors', async () => {
    await sb.fs.uploadFiles([
      { source: Buffer.from('one'), destination: `${W}/multi/1.txt` },
      { source: Buffer.from('two'), destination: `${W}/multi/2.txt` },
      { source: Buffer.from('three'), destination: `${W}/multi/sub/3.txt` },
    ])
    const res = await sb.fs.downloadFiles([
      { source: `${W}/multi/1.txt` },
      { source: `${W}/multi/missing.txt` },
      { source: `${W}/multi/sub/3.txt` },
      { source: `${W}/multi` },
    ])
    assert.equal(res.length, 4)
    assert.equal(res[0].result.toString(), 'one')
    assert.equal(res[0].error, undefined)
    assert.equal(res[1].result, undefined)
    assert.ok(res[1].error, 'missing file has an error')
    assert.equal(res[1].errorDetails.statusCode, 404)
    assert.equal(res[1].errorDetails.code, 'FILE_NOT_FOUND')
    assert.equal(res[2].result.toString(), 'three')
    assert.ok(res[3].error, 'a directory is an error part')
    assert.equal(res[3].errorDetails.statusCode, 400)
    assert.equal(res[3].errorDetails.code, 'INVALID_FILE_PATH')
  })

  it('downloadFile of a missing file throws DaytonaNotFoundError', async () => {
    await c.rejectsWith(() => sb.fs.downloadFile(`${W}/nope.txt`), sdk.DaytonaNotFoundError, { status: 404 })
  })

  it('odd file names survive: spaces, plus, percent, unicode, quotes', async () => {
    const names = ['a b.txt', 'a+b.txt', '100%.txt', 'ü-ñ-日本.txt', "it's \"q\".txt", 'semi;colon&amp=x?.txt']
    for (const n of names) await sb.fs.uploadFile(Buffer.from(`content of ${n}`), `${W}/odd/${n}`)
    const listed = (await sb.fs.listFiles(`${W}/odd`)).map((f) => f.name).sort()
    assert.deepEqual(listed, [...names].sort())
    for (const n of names) {
      assert.equal((await sb.fs.downloadFile(`${W}/odd/${n}`)).toString(), `content of ${n}`)
      assert.equal((await sb.fs.getFileDetails(`${W}/odd/${n}`)).name, n)
    }
    const many = await sb.fs.downloadFiles(names.map((n) => ({ source: `${W}/odd/${n}` })))
    for (let i = 0; i < names.length; i++) assert.equal(many[i].result.toString(), `content of ${names[i]}`)
  })

  it('listFiles: sorted entries with the FileInfo fields', async () => {
    const d = `${W}/ls`
    await sb.fs.uploadFile(Buffer.from('12345'), `${d}/b.txt`)
    await sb.fs.uploadFile(Buffer.from('x'), `${d}/a.txt`)
    await sb.fs.createFolder(`${d}/c-dir`, '755')
    const list = await sb.fs.listFiles(d)
    assert.deepEqual(list.map((f) => f.name), ['a.txt', 'b.txt', 'c-dir'])
    const b = list[1]
    assert.equal(b.size, 5)
    assert.equal(b.isDir, false)
    assert.equal(b.mode, '-rw-r--r--')
    assert.equal(b.permissions, '0644')
    assert.match(b.owner, /^\d+$/)
    assert.match(b.group, /^\d+$/)
    assert.ok(!Number.isNaN(Date.parse(b.modifiedAt)), `modifiedAt ${b.modifiedAt}`)
    assert.match(b.modifiedAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/)
    assert.match(b.modTime, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)? \+0000 UTC$/)
    assert.ok(Math.abs(Date.parse(b.modifiedAt) - Date.now()) < 120000, 'mtime is recent')
    const dir = list[2]
    assert.equal(dir.isDir, true)
    assert.equal(dir.mode, 'drwxr-xr-x')
    assert.equal(dir.permissions, '0755')
    assert.deepEqual(await sb.fs.listFiles(`${d}/c-dir`), [])
  })

  it('listFiles errors: missing dir 404, a file 400', async () => {
    await c.rejectsWith(() => sb.fs.listFiles(`${W}/no-such-dir`), sdk.DaytonaNotFoundError, { status: 404 })
    await c.rejectsWith(() => sb.fs.listFiles(`${W}/hello.txt`), sdk.DaytonaValidationError, { status: 400 })
  })

  it('listFiles of / shows the host tree read-only and the sandbox home', async () => {
    const root = (await sb.fs.listFiles('/')).map((f) => f.name)
    for (const n of ['home', 'tmp', 'etc', 'usr']) assert.ok(root.includes(n), `/ lists ${n}`)
    const home = (await sb.fs.listFiles('/home')).map((f) => f.name)
    assert.ok(home.includes('daytona'))
  })

  it('getFileDetails: file, directory, missing', async () => {
    const f = await sb.fs.getFileDetails(`${W}/hello.txt`)
    assert.equal(f.name, 'hello.txt')
    assert.equal(f.size, 15)
    assert.equal(f.isDir, false)
    const d = await sb.fs.getFileDetails(W)
    assert.equal(d.name, 'conf')
    assert.equal(d.isDir, true)
    assert.ok(d.mode.startsWith('d'))
    await c.rejectsWith(() => sb.fs.getFileDetails(`${W}/missing`), sdk.DaytonaNotFoundError, { status: 404 })
  })

  it('createFolder with a mode, with parents, idempotent, and onto a file', async () => {
    await sb.fs.createFolder(`${W}/mk/750`, '750')
    const a = await sb.fs.getFileDetails(`${W}/mk/750`)
    assert.equal(a.isDir, true)
    assert.equal(a.permissions, '0750')
    assert.equal(a.mode, 'drwxr-x---')
    await sb.fs.createFolder(`${W}/mk/p/q/r`, '0700')
    assert.equal((await sb.fs.getFileDetails(`${W}/mk/p/q/r`)).permissions, '0700')
    await sb.fs.createFolder(`${W}/mk/p/q/r`, '755') // exists: fine
    await c.rejectsWith(() => sb.fs.createFolder(`${W}/hello.txt`, '755'), sdk.DaytonaValidationError, { status: 400 })
    await c.rejectsWith(() => sb.fs.createFolder(`${W}/mk/bad`, '9z'), sdk.DaytonaValidationError, { status: 400 })
  })

  it('moveFiles: rename a file and a directory', async () => {
    await sb.fs.uploadFile(Buffer.from('moving'), `${W}/mv/src.txt`)
    await sb.fs.moveFiles(`${W}/mv/src.txt`, `${W}/mv/dst.txt`)
    assert.equal((await sb.fs.downloadFile(`${W}/mv/dst.txt`)).toString(), 'moving')
    await c.rejectsWith(() => sb.fs.getFileDetails(`${W}/mv/src.txt`), sdk.DaytonaNotFoundError)
    await sb.fs.createFolder(`${W}/mv/dir1`, '755')
    await sb.fs.uploadFile(Buffer.from('inside'), `${W}/mv/dir1/in.txt`)
    await sb.fs.moveFiles(`${W}/mv/dir1`, `${W}/mv/dir2`)
    assert.equal((await sb.fs.downloadFile(`${W}/mv/dir2/in.txt`)).toString(), 'inside')
  })

  it('moveFiles onto an existing destination is a DaytonaConflictError (409), nothing changes', async () => {
    await sb.fs.uploadFile(Buffer.from('A'), `${W}/mv/a.txt`)
    await sb.fs.uploadFile(Buffer.from('B'), `${W}/mv/b.txt`)
    await c.rejectsWith(() => sb.fs.moveFiles(`${W}/mv/a.txt`, `${W}/mv/b.txt`), sdk.DaytonaConflictError, { status: 409 })
    assert.equal((await sb.fs.downloadFile(`${W}/mv/a.txt`)).toString(), 'A')
    assert.equal((await sb.fs.downloadFile(`${W}/mv/b.txt`)).toString(), 'B')
    // a directory destination too
    await c.rejectsWith(() => sb.fs.moveFiles(`${W}/mv/a.txt`, `${W}/mv/dir2`), sdk.DaytonaConflictError, { status: 409 })
  })

  it('moveFiles errors: missing source 404, missing destination parent 404', async () => {
    await c.rejectsWith(() => sb.fs.moveFiles(`${W}/mv/none`, `${W}/mv/x`), sdk.DaytonaNotFoundError, { status: 404 })
    await c.rejectsWith(() => sb.fs.moveFiles(`${W}/mv/a.txt`, `${W}/mv/no/parent/x`), sdk.DaytonaNotFoundError, { status: 404 })
  })

  it('setFilePermissions: mode, owner/group by id, missing path', async () => {
    await sb.fs.uploadFile(Buffer.from('perm'), `${W}/perm.txt`)
    await sb.fs.setFilePermissions(`${W}/perm.txt`, { mode: '600' })
    let info = await sb.fs.getFileDetails(`${W}/perm.txt`)
    assert.equal(info.permissions, '0600')
    assert.equal(info.mode, '-rw-------')
    await sb.fs.setFilePermissions(`${W}/perm.txt`, { mode: '0755' })
    info = await sb.fs.getFileDetails(`${W}/perm.txt`)
    assert.equal(info.permissions, '0755')
    // The command side agrees.
    const r = await sb.process.executeCommand(`stat -c %a ${W}/perm.txt`)
    assert.equal(r.result.trim(), '755')
    // chown to its current owner: allowed whoever we are
    await sb.fs.setFilePermissions(`${W}/perm.txt`, { owner: info.owner, group: info.group })
    await c.rejectsWith(() => sb.fs.setFilePermissions(`${W}/perm-missing`, { mode: '644' }), sdk.DaytonaNotFoundError, { status: 404 })
    await c.rejectsWith(() => sb.fs.setFilePermissions(`${W}/perm.txt`, { owner: 'no-such-user-xyz' }), sdk.DaytonaValidationError, { status: 400 })
  })

  it('deleteFile: a file, a dir needs recursive, recursive dir, missing', async () => {
    await sb.fs.uploadFile(Buffer.from('x'), `${W}/del/f.txt`)
    await sb.fs.uploadFile(Buffer.from('y'), `${W}/del/tree/a/b.txt`)
    await sb.fs.deleteFile(`${W}/del/f.txt`)
    await c.rejectsWith(() => sb.fs.getFileDetails(`${W}/del/f.txt`), sdk.DaytonaNotFoundError)
    await c.rejectsWith(() => sb.fs.deleteFile(`${W}/del/tree`), sdk.DaytonaValidationError, { status: 400 })
    assert.equal((await sb.fs.getFileDetails(`${W}/del/tree/a/b.txt`)).size, 1)
    await sb.fs.deleteFile(`${W}/del/tree`, true)
    await c.rejectsWith(() => sb.fs.getFileDetails(`${W}/del/tree`), sdk.DaytonaNotFoundError)
    await c.rejectsWith(() => sb.fs.deleteFile(`${W}/del/nothing`), sdk.DaytonaNotFoundError, { status: 404 })
    // an empty dir without recursive is still refused (contract: 400 unless recursive=true)
    await sb.fs.createFolder(`${W}/del/emptydir`, '755')
    await c.rejectsWith(() => sb.fs.deleteFile(`${W}/del/emptydir`), sdk.DaytonaValidationError, { status: 400 })
  })

  it('findFiles: literal per-line grep with line numbers, recursive', async () => {
    const d = `${W}/grep`
    await sb.fs.uploadFile(Buffer.from('alpha\nneedle one\ngamma\n'), `${d}/a.txt`)
    await sb.fs.uploadFile(Buffer.from('x\ny\nz\n  the needle here  '), `${d}/sub/b.py`)
    await sb.fs.uploadFile(Buffer.from('needle\0binary'), `${d}/bin.dat`)
    await sb.fs.uploadFile(Buffer.from('a.c and abc\n'), `${d}/dots.txt`)
    const m = await sb.fs.findFiles(d, 'needle')
    const got = m.map((x) => [x.file, x.line, x.content]).sort()
    assert.deepEqual(got, [
      [`${d}/a.txt`, 2, 'needle one'],
      [`${d}/sub/b.py`, 4, '  the needle here  '],
    ])
    // literal, not a regex
    const lit = await sb.fs.findFiles(d, 'a.c')
    assert.equal(lit.length, 1)
    assert.equal(lit[0].file, `${d}/dots.txt`)
    const none = await sb.fs.findFiles(d, 'x.c')
    assert.deepEqual(none, [])
    assert.deepEqual(await sb.fs.findFiles(`${W}/no-such-root`, 'needle'), [])
  })

  it('searchFiles: glob on base names, recursive', async () => {
    const d = `${W}/glob`
    for (const f of ['a.py', 'b.txt', 'sub/c.py', 'sub/deeper/d.py', 'sub/e.pyc']) {
      await sb.fs.uploadFile(Buffer.from('x'), `${d}/${f}`)
    }
    const r = await sb.fs.searchFiles(d, '*.py')
    assert.deepEqual([...r.files].sort(), [`${d}/a.py`, `${d}/sub/c.py`, `${d}/sub/deeper/d.py`])
    const r2 = await sb.fs.searchFiles(d, 'sub')
    assert.deepEqual(r2.files, [`${d}/sub`])
    assert.deepEqual((await sb.fs.searchFiles(`${W}/no-such-root`, '*')).files, [])
  })

  it('replaceInFiles: literal replacement with per-file results', async () => {
    await sb.fs.uploadFile(Buffer.from('foo.bar foo.bar\n'), `${W}/rep/a.txt`)
    const res = await sb.fs.replaceInFiles([`${W}/rep/a.txt`, `${W}/rep/missing.txt`], 'foo.bar', 'X')
    const byFile = Object.fromEntries(res.map((r) => [r.file, r]))
    assert.equal(byFile[`${W}/rep/a.txt`].success, true)
    assert.equal(byFile[`${W}/rep/missing.txt`].success, false)
    assert.equal((await sb.fs.downloadFile(`${W}/rep/a.txt`)).toString(), 'X X\n')
  })

  it('files written by a command are visible to the file API and vice versa', async () => {
    const r = await sb.process.executeCommand(`mkdir -p ${W}/cmd && printf 'from-cmd' > ${W}/cmd/out.txt && ln -s out.txt ${W}/cmd/link.txt && ln -s /nonexistent ${W}/cmd/dangling`)
    assert.equal(r.exitCode, 0, r.result)
    assert.equal((await sb.fs.downloadFile(`${W}/cmd/out.txt`)).toString(), 'from-cmd')
    // symlinks are followed by stat and download; dangling ones are omitted from listings
    assert.equal((await sb.fs.downloadFile(`${W}/cmd/link.txt`)).toString(), 'from-cmd')
    const names = (await sb.fs.listFiles(`${W}/cmd`)).map((f) => f.name)
    assert.deepEqual(names, ['link.txt', 'out.txt'])
    await sb.fs.uploadFile(Buffer.from('from-api'), `${W}/cmd/in.txt`)
    const r2 = await sb.process.executeCommand(`cat ${W}/cmd/in.txt`)
    assert.equal(r2.result, 'from-api')
  })

  it('the host tree outside /home/daytona and /tmp is read-only', async () => {
    await c.rejectsWith(() => sb.fs.uploadFile(Buffer.from('x'), '/usr/conf-should-fail.txt'), sdk.DaytonaError)
    const r = await sb.process.executeCommand('touch /usr/conf-should-fail 2>&1; echo rc=$?')
    assert.match(r.result, /rc=1/)
    // /tmp is the sandbox's own
    await sb.fs.uploadFile(Buffer.from('tmp!'), '/tmp/conf-tmp.txt')
    assert.equal((await sb.process.executeCommand('cat /tmp/conf-tmp.txt')).result, 'tmp!')
  })
})
