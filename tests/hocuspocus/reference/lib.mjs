// Shared by capture-server.mjs and probe.mjs: start the reference @hocuspocus/server (v4 or v3)
// in this process, and a raw WebSocket client that records every frame it receives.

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import WebSocket from 'ws'

const here = path.dirname(fileURLToPath(import.meta.url))
export const FIXTURES = path.resolve(here, '..', '..', '..', 'crates', 'tandem-core', 'tests', 'fixtures', 'hocuspocus')

export const versionOf = (pkg) => JSON.parse(readFileSync(path.join(here, 'node_modules', pkg, 'package.json'), 'utf8')).version

/** A provider frame captured by ../capture.mjs. */
export const providerFixture = (major, label) =>
  Uint8Array.from(Buffer.from(readFileSync(path.join(FIXTURES, `provider-${major}`, `${label}.hex`), 'utf8').trim(), 'hex'))

export async function startReference (major, hooks = {}) {
  const { Server } = await import(`hocuspocus-server-${major}`)
  const server = new Server({ port: 0, address: '127.0.0.1', quiet: true, stopOnSignals: false, ...hooks })
  await server.listen()
  return { server, url: `ws://127.0.0.1:${server.address.port}`, version: versionOf(`hocuspocus-server-${major}`) }
}

export function build (address, ...parts) {
  const e = encoding.createEncoder()
  if (address !== null) encoding.writeVarString(e, address)
  for (const [kind, value] of parts) {
    if (kind === 'uint') encoding.writeVarUint(e, value)
    if (kind === 'bytes') encoding.writeVarUint8Array(e, value)
    if (kind === 'string') encoding.writeVarString(e, value)
  }
  return encoding.toUint8Array(e)
}

export function describe (bytes) {
  if (bytes.length === 1) return { kind: bytes[0] === 9 ? 'ping' : `byte${bytes[0]}` }
  const d = decoding.createDecoder(bytes)
  const address = decoding.readVarString(d)
  const type = decoding.readVarUint(d)
  const out = { address, type, kind: `type${type}` }
  if (type === 0) { out.kind = ['sync-step1', 'sync-step2', 'update'][decoding.readVarUint(d)]; out.payload = decoding.readVarUint8Array(d) }
  if (type === 1) { out.kind = 'awareness'; out.payload = decoding.readVarUint8Array(d) }
  if (type === 2) {
    const sub = decoding.readVarUint(d)
    out.kind = ['token-request', 'permission-denied', 'authenticated'][sub]
    if (sub > 0) out.text = decoding.readVarString(d)
  }
  if (type === 5) { out.kind = 'stateless'; out.text = decoding.readVarString(d) }
  if (type === 7) { out.kind = 'close'; out.text = decoding.readVarString(d) }
  if (type === 8) { out.kind = 'sync-status'; out.applied = decoding.readVarUint(d) }
  return out
}

export async function waitFor (predicate, { timeout = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A raw client: `send(bytes)`, `frames` (Uint8Array[]), `next(n)` waits for n more frames. */
export async function rawClient (url) {
  const ws = new WebSocket(url)
  ws.binaryType = 'nodebuffer'
  const frames = []
  const client = {
    ws,
    frames,
    seen: 0,
    closed: null,
    send: (bytes) => ws.send(bytes),
    async next (n, what = `${n} frame(s)`) {
      await waitFor(() => frames.length >= client.seen + n, { what: `${what}; got ${frames.slice(client.seen).map((f) => describe(f).kind)}` })
      const out = frames.slice(client.seen, client.seen + n)
      client.seen += n
      return out
    },
    /** Everything received so far that was not taken by next(). */
    rest () { const out = frames.slice(client.seen); client.seen = frames.length; return out },
    close: () => new Promise((resolve) => { if (ws.readyState === 3) resolve(); else { ws.once('close', resolve); ws.close() } })
  }
  ws.on('message', (data) => frames.push(new Uint8Array(data)))
  ws.on('close', (code, reason) => { client.closed = { code, reason: String(reason) } })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  return client
}
