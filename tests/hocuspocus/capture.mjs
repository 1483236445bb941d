// Captures the frames the real @hocuspocus/provider (v4 and v3, the versions installed here) puts
// on the wire, for the byte-level fixtures of crates/tandem-core/tests/hocuspocus_frames.rs.
//
//   node capture.mjs           writes crates/tandem-core/tests/fixtures/hocuspocus/provider-v{4,3}/*.hex
//   node capture.mjs --check   captures again and fails if any checked-in fixture differs
//
// A tiny capture server (`ws`, 127.0.0.1, port 0) plays just enough of a Hocuspocus server for
// the provider to go through a whole session: it answers Auth with Authenticated "read-write",
// the provider's SyncStep1 with its own SyncStep1 and an empty SyncStep2 (as Hocuspocus does),
// every change with SyncStatus(1), and at chosen moments sends a Ping (v4), a QueryAwareness and
// a token request to draw out the provider's answers. Everything the provider sends is recorded.
// The Y.Doc's clientID is fixed (1234567) and the v4 session id set by hand, so every run yields
// the same bytes.

import assert from 'node:assert/strict'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import WebSocket, { WebSocketServer } from 'ws'
import * as Y from 'yjs'
import { STACKS, waitFor } from './lib/harness.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
export const FIXTURES = path.resolve(here, '..', '..', 'crates', 'tandem-core', 'tests', 'fixtures', 'hocuspocus')

const CLIENT_ID = 1234567
const NAME = 'my-doc'
const TOKEN = 'secret-token'

const frame = (address, ...parts) => {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, address)
  for (const [kind, value] of parts) {
    if (kind === 'uint') encoding.writeVarUint(e, value)
    if (kind === 'bytes') encoding.writeVarUint8Array(e, value)
    if (kind === 'string') encoding.writeVarString(e, value)
  }
  return encoding.toUint8Array(e)
}

/** Type of a provider frame: [address, type, subtype] (Pong has no address). */
function peek (bytes) {
  if (bytes.length === 1) return { address: null, type: bytes[0] }
  const d = decoding.createDecoder(bytes)
  const address = decoding.readVarString(d)
  const type = decoding.readVarUint(d)
  const sub = type === 0 ? decoding.readVarUint(d) : null
  return { address, type, sub }
}

/**
 * Runs one provider session against the capture server and returns the labelled frames.
 * @param {any} stack one of STACKS
 * @returns {Promise<Array<{ label: string, hex: string }>>}
 */
export async function captureProviderFrames (stack) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => wss.once('listening', resolve))
  const url = `ws://127.0.0.1:${wss.address().port}`
  /** @type {Uint8Array[]} */
  const received = []
  let conn = null
  wss.on('connection', (ws) => {
    conn = ws
    ws.on('message', (data) => {
      const bytes = new Uint8Array(data)
      received.push(bytes)
      const { address, type, sub } = peek(bytes)
      if (type === 2) ws.send(frame(address, ['uint', 2], ['uint', 2], ['string', 'read-write']))
      if (type === 0 && sub === 0) {
        ws.send(frame(address, ['uint', 0], ['uint', 0], ['bytes', Y.encodeStateVector(new Y.Doc())]))
        ws.send(frame(address, ['uint', 0], ['uint', 1], ['bytes', Y.encodeStateAsUpdate(new Y.Doc())]))
      }
      if (type === 0 && (sub === 1 || sub === 2)) ws.send(frame(address, ['uint', 8], ['uint', 1]))
    })
  })

  const frames = []
  let seen = 0
  /** Waits for the provider's next frames and labels them. */
  const expect = async (labels) => {
    await waitFor(() => received.length >= seen + labels.length, {
      timeout: 5000,
      what: `${stack.major}: frames ${labels.join(', ')}`,
      detail: () => received.slice(seen).map((b) => Buffer.from(b).toString('hex'))
    })
    for (const label of labels) frames.push({ label, hex: Buffer.from(received[seen++]).toString('hex') })
  }

  const doc = new Y.Doc()
  doc.clientID = CLIENT_ID
  const socket = new stack.HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  const provider = new stack.HocuspocusProvider({ websocketProvider: socket, name: NAME, document: doc, token: TOKEN })
  provider.attach()
  // On open: Auth (token, and the version in v4), SyncStep1, the initial awareness ({} at clock 0).
  await expect(['auth', 'sync-step1', 'awareness-initial'])
  // The capture server's SyncStep1 is answered with SyncStep2; its SyncStatus makes the provider synced.
  await expect(['sync-step2'])
  await waitFor(() => provider.synced && provider.unsyncedChanges === 0, { what: 'the provider to be synced' })

  doc.getText('text').insert(0, 'hello')
  await expect(['update'])
  provider.setAwarenessField('user', { name: 'Alice', color: '#ff0000' })
  await expect(['awareness-user'])
  provider.sendStateless('{"a":1}')
  await expect(['stateless'])
  if (stack.major === 'v4') {
    conn.send(Uint8Array.of(9))
    await expect(['pong'])
  }
  conn.send(frame(NAME, ['uint', 3]))
  await expect(['awareness-query-reply'])
  conn.send(frame(NAME, ['uint', 2], ['uint', 0]))
  await expect(['auth-renewal'])

  // Another document on the same socket, without a token, with a multi-byte UTF-8 name.
  const other = new stack.HocuspocusProvider({ websocketProvider: socket, name: 'notes/2024/plän', document: new Y.Doc(), awareness: null })
  other.attach()
  await expect(['auth-empty-token-utf8-name', 'sync-step1-utf8-name'])
  await expect(['sync-step2-utf8-name'])

  if (stack.major === 'v4') {
    // v4 session awareness: the address is `name \0 sessionId`.
    const session = new stack.HocuspocusProvider({ websocketProvider: socket, name: NAME, document: new Y.Doc(), token: TOKEN, awareness: null, sessionAwareness: true })
    session.sessionId = 'abc123'
    session.attach()
    await expect(['auth-session', 'sync-step1-session'])
    await expect(['sync-step2-session'])
    session.destroy()
    await expect(['close-session'])
  }

  other.destroy()
  await expect(['close-utf8-name'])
  // destroy(): the local awareness state removed (null), then CLOSE.
  provider.destroy()
  await expect(['awareness-removal', 'close'])

  socket.destroy()
  await new Promise((resolve) => wss.close(resolve))
  return frames
}

async function main () {
  const check = process.argv.includes('--check')
  for (const stack of STACKS) {
    const dir = path.join(FIXTURES, `provider-${stack.major}`)
    const frames = await captureProviderFrames(stack)
    if (check) {
      const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.hex')).sort() : []
      assert.deepEqual(files, frames.map((f) => `${f.label}.hex`).sort(), `${dir}: the same fixture files`)
      for (const f of frames) assert.equal(readFileSync(path.join(dir, `${f.label}.hex`), 'utf8').trim(), f.hex, `${stack.major} ${f.label}`)
      console.log(`${stack.major} (@hocuspocus/provider ${stack.version}): ${frames.length} fixtures reproduced`)
    } else {
      mkdirSync(dir, { recursive: true })
      for (const f of frames) writeFileSync(path.join(dir, `${f.label}.hex`), f.hex + '\n')
      writeFileSync(path.join(dir, 'VERSION'), `@hocuspocus/provider ${stack.version}\n`)
      console.log(`${stack.major} (@hocuspocus/provider ${stack.version}): wrote ${frames.length} fixtures to ${path.relative(process.cwd(), dir)}`)
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })
}
