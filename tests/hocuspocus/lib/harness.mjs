// Per-test session: owns the servers, data dirs, Hocuspocus providers, shared provider sockets
// and y-websocket clients a test creates, and tears all of them down when the test ends, whether
// it passed or failed. A test fails if a server logged a WARN/ERROR line it did not expect.
// (Patterns from tests/interop/lib/harness.mjs.)

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import WebSocket from 'ws'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { WebsocketProvider } from 'y-websocket'
import * as hp4 from 'hocuspocus-provider-v4'
import * as hp3 from 'hocuspocus-provider-v3'

import { TandemServer, makeTempDir, mintToken, removeDir, waitFor, writeSecret } from './server.mjs'
import { decodeServerFrame } from './frames.mjs'

export { Y, waitFor, mintToken, decodeServerFrame }

/** Deadline for a provider to connect, authenticate and sync. */
export const SYNC_TIMEOUT_MS = 10_000
/** Deadline for replicas to converge after an edit. */
export const CONVERGE_TIMEOUT_MS = 10_000

const NODE_MODULES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules')
/** The installed version of a package (read from node_modules: not every package exports package.json). */
export const versionOf = (pkg) => JSON.parse(readFileSync(path.join(NODE_MODULES, pkg, 'package.json'), 'utf8')).version

/** The provider majors under test. */
export const STACKS = [
  { major: 'v4', version: versionOf('hocuspocus-provider-v4'), ...hp4 },
  { major: 'v3', version: versionOf('hocuspocus-provider-v3'), ...hp3 }
]
export const Y_WEBSOCKET_VERSION = versionOf('y-websocket')

process.setMaxListeners(Math.max(process.getMaxListeners(), 200))

/** Quick reconnects so restart tests do not wait for the provider's default back-off. */
const FAST_RETRY = { delay: 100, minDelay: 100, maxDelay: 1000, initialDelay: 0 }

let clientSeq = 0

/** The replica state compared between clients. */
function snapshotOf (doc) {
  return {
    stateVector: Buffer.from(Y.encodeStateVector(doc)).toString('hex'),
    text: doc.getText('text').toDelta(),
    map: doc.getMap('map').toJSON()
  }
}

/**
 * One Hocuspocus provider of a given major, with its own Y.Doc, recording every frame it
 * receives (decoded) and the events it emits.
 */
export class HpClient {
  /**
   * @param {{ stack: any, url?: string, socket?: any, name: string, token?: string | null | (() => string), label?: string, attach?: boolean, options?: object }} opts
   */
  constructor ({ stack, url, socket, name, token = null, label, attach = true, options = {} }) {
    this.stack = stack
    this.name = name
    this.label = label ?? `hocuspocus-${stack.major}#${++clientSeq}`
    this.doc = new Y.Doc()
    this.text = this.doc.getText('text')
    this.map = this.doc.getMap('map')
    /** Decoded frames this provider received, in order. */
    this.frames = []
    this.authenticated = []
    this.failures = []
    this.stateless = []
    this.closes = []
    const common = { name, document: this.doc, token, ...options }
    this.provider = socket
      ? new stack.HocuspocusProvider({ ...common, websocketProvider: socket })
      : new stack.HocuspocusProvider({ ...common, url, WebSocketPolyfill: WebSocket, ...FAST_RETRY })
    this.provider.on('message', ({ event }) => { this.frames.push(decodeServerFrame(event.data)) })
    this.provider.on('authenticated', ({ scope }) => { this.authenticated.push(scope) })
    this.provider.on('authenticationFailed', ({ reason }) => { this.failures.push(reason) })
    this.provider.on('stateless', ({ payload }) => { this.stateless.push(payload) })
    this.provider.on('close', ({ event }) => { this.closes.push({ code: event?.code, reason: event?.reason }) })
    // A provider on a shared socket must be attached explicitly.
    if (socket && attach) this.provider.attach()
    this.destroyed = false
  }

  get socket () { return this.provider.configuration.websocketProvider }

  snapshot () { return snapshotOf(this.doc) }

  framesOf (kind) { return this.frames.filter((f) => f.kind === kind) }

  /** Waits for `authenticated` (returns the scope). */
  async authenticatedScope ({ timeout = SYNC_TIMEOUT_MS } = {}) {
    await waitFor(() => this.authenticated.length > 0 || this.failures.length > 0, {
      timeout, what: `${this.label} (${this.name}) to be authenticated`, detail: () => this.describe()
    })
    if (this.failures.length) throw new Error(`${this.label}: authentication failed: ${JSON.stringify(this.failures)}`)
    return this.authenticated[this.authenticated.length - 1]
  }

  /** Waits until `synced` is true and `unsyncedChanges` is 0: every edit is durable on the server. */
  async settled ({ timeout = SYNC_TIMEOUT_MS, what = 'synced with unsyncedChanges 0' } = {}) {
    await waitFor(() => this.provider.synced && this.provider.unsyncedChanges === 0 && !this.provider.hasUnsyncedChanges, {
      timeout, what: `${this.label} (${this.name}) ${what}`, detail: () => this.describe()
    })
  }

  describe () {
    const p = this.provider
    return {
      label: this.label,
      name: this.name,
      synced: p.synced,
      unsyncedChanges: p.unsyncedChanges,
      isAuthenticated: p.isAuthenticated,
      authorizedScope: p.authorizedScope,
      socketStatus: this.socket.status,
      failures: this.failures,
      closes: this.closes,
      frames: this.frames.map((f) => [f.kind, f.scope ?? f.reason ?? f.applied ?? f.payload?.length]).slice(-30),
      snapshot: this.snapshot()
    }
  }

  destroy () {
    if (this.destroyed) return
    this.destroyed = true
    this.provider.destroy()
    this.doc.destroy()
  }
}

/** A y-websocket 3.x client, optionally opted in to Tandem's custom events (`?events=1`). */
export class YwsClient {
  constructor ({ url, room, params = {}, label, events = false }) {
    this.label = label ?? `y-websocket-${Y_WEBSOCKET_VERSION}#${++clientSeq}`
    this.room = room
    this.doc = new Y.Doc()
    this.text = this.doc.getText('text')
    this.map = this.doc.getMap('map')
    /** Parsed JSON of every custom event received (`varUint(5) · varString(json)`). */
    this.events = []
    this.provider = new WebsocketProvider(url, room, this.doc, {
      WebSocketPolyfill: WebSocket,
      disableBc: true,
      resyncInterval: -1,
      connect: false,
      params: events ? { ...params, events: '1' } : params
    })
    if (events) {
      this.provider.messageHandlers[5] = (_encoder, decoder) => {
        this.events.push(JSON.parse(decoding.readVarString(decoder)))
      }
    }
    this.provider.connect()
    this.destroyed = false
  }

  synced ({ timeout = SYNC_TIMEOUT_MS } = {}) {
    return waitFor(() => this.provider.synced, { timeout, what: `${this.label} (${this.room}) to sync` })
  }

  /** Sends a custom event `{type, data}` (outer message type 5). */
  sendEvent (event) {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 5)
    encoding.writeVarString(encoder, JSON.stringify(event))
    this.provider.ws.send(encoding.toUint8Array(encoder))
  }

  snapshot () { return snapshotOf(this.doc) }

  destroy () {
    if (this.destroyed) return
    this.destroyed = true
    this.provider.destroy()
    this.doc.destroy()
  }
}

/** Waits until every replica (HpClient, YwsClient or a `{ label, snapshot() }`) is identical. */
export async function waitConverged (clients, { timeout = CONVERGE_TIMEOUT_MS, what = 'replicas to converge' } = {}) {
  await waitFor(() => {
    const first = clients[0].snapshot()
    return clients.slice(1).every((c) => isDeepStrictEqual(c.snapshot(), first))
  }, {
    timeout,
    what: `${what} [${clients.map((c) => c.label).join(', ')}]`,
    detail: () => Object.fromEntries(clients.map((c) => [c.label, c.snapshot()]))
  })
  return clients[0].snapshot()
}

export class Session {
  constructor (t) {
    this.t = t
    /** @type {TandemServer[]} */
    this.servers = []
    this.clients = []
    this.sockets = []
    this.dirs = []
    /** Regexps of WARN/ERROR messages this test provokes on purpose. */
    this.expectedWarnings = [/^no authentication configured/]
  }

  expectWarning (re) { this.expectedWarnings.push(re) }

  async tempDir () {
    const dir = await makeTempDir()
    this.dirs.push(dir)
    return dir
  }

  /** Starts a server on port 0 with a fresh data dir (anonymous unless `auth`). */
  async server ({ auth = false, extraArgs = [], label } = {}) {
    const dataDir = await this.tempDir()
    const args = [...extraArgs]
    let secretFile = null
    if (auth) {
      secretFile = await writeSecret(await this.tempDir())
      args.push('--jwt-secret-file', secretFile)
    }
    const server = new TandemServer({ dataDir, extraArgs: args, label: label ?? `server#${this.servers.length + 1}` })
    server.secretFile = secretFile
    this.servers.push(server)
    await server.start()
    return server
  }

  /** SIGTERM (exit 0 required), then a new server on the same data dir, flags and address. */
  async restart (server, { samePort = true } = {}) {
    await server.stop()
    this.t?.diagnostic(`${server.label} exited with code 0 ${server.stopResult.ms} ms after SIGTERM`)
    return this.startAgain(server, { samePort })
  }

  /** A new server on a stopped (or crashed) server's data dir, flags and (by default) address. */
  async startAgain (server, { samePort = true } = {}) {
    const next = new TandemServer({
      dataDir: server.dataDir,
      extraArgs: server.extraArgs,
      listen: samePort ? server.addr : '127.0.0.1:0',
      label: `server#${this.servers.length + 1} (restart of ${server.label})`
    })
    next.secretFile = server.secretFile
    this.servers.push(next)
    await next.start()
    return next
  }

  /** A token from `tandem token` signed with the server's secret. */
  token (server, { docs, rights = 'write', ttl = '1h', sub } = {}) {
    return mintToken({ secretFile: server.secretFile, docs, rights, ttl, sub })
  }

  /** A shared HocuspocusProviderWebsocket of the given major. */
  socket (stack, server, options = {}) {
    const socket = new stack.HocuspocusProviderWebsocket({ url: server.wsUrl, WebSocketPolyfill: WebSocket, ...FAST_RETRY, ...options })
    this.sockets.push(socket)
    return socket
  }

  /** A Hocuspocus provider: its own socket on `server`, or the shared `socket`. */
  hp (stack, server, name, opts = {}) {
    const c = new HpClient({ stack, url: server?.wsUrl, name, ...opts })
    this.clients.push(c)
    return c
  }

  yws (server, room, opts = {}) {
    const c = new YwsClient({ url: server.wsUrl, room, ...opts })
    this.clients.push(c)
    return c
  }

  /** The server's current document, read over HTTP (`GET /docs/{doc}/update`), as a Y.Doc. */
  async serverDoc (server, name, { token } = {}) {
    const res = await fetch(`${server.httpUrl}/docs/${encodeURIComponent(name)}/update`, {
      headers: token ? { authorization: `Bearer ${token}` } : {}
    })
    if (!res.ok) throw new Error(`GET /docs/${name}/update: ${res.status} ${await res.text()}`)
    const doc = new Y.Doc()
    Y.applyUpdate(doc, new Uint8Array(await res.arrayBuffer()))
    return { label: `${server.label}:${name}`, doc, snapshot: () => snapshotOf(doc) }
  }

  /** Waits until the server's stored document equals `client`'s replica (polling over HTTP). */
  async serverMatches (server, name, client, { token, timeout = CONVERGE_TIMEOUT_MS } = {}) {
    let last = null
    await waitFor(async () => {
      last = await this.serverDoc(server, name, { token })
      return isDeepStrictEqual(last.snapshot(), client.snapshot())
    }, {
      timeout,
      what: `the server's ${name} to equal ${client.label}`,
      detail: () => ({ server: last?.snapshot(), [client.label]: client.snapshot() })
    })
  }

  /** `GET /docs/{doc}` metadata (`{name, size, peers, loaded, lastChange}`). */
  async docInfo (server, name, { token } = {}) {
    const res = await fetch(`${server.httpUrl}/docs/${encodeURIComponent(name)}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {}
    })
    if (!res.ok) throw new Error(`GET /docs/${name}: ${res.status} ${await res.text()}`)
    return res.json()
  }

  async cleanup () {
    const errors = []
    for (const c of this.clients) {
      try { c.destroy() } catch (err) { errors.push(err) }
    }
    for (const s of this.sockets) {
      try { s.destroy() } catch (err) { errors.push(err) }
    }
    for (const s of this.servers) {
      try {
        if (s.running) await s.stop()
        else if (s.exit && !s.stopRequested) errors.push(new Error(`${s.label} exited on its own during the test: ${JSON.stringify(s.exit)}`))
      } catch (err) {
        errors.push(err)
        await s.kill().catch(() => {})
      }
      const panics = s.stderrLines.filter((l) => l.includes('panicked'))
      if (panics.length) errors.push(new Error(`${s.label} panicked:\n${panics.join('\n')}`))
      const complaints = s.records.filter((r) => (r.level === 'WARN' || r.level === 'ERROR') &&
        !this.expectedWarnings.some((re) => re.test(String(r.fields?.message))))
      if (complaints.length) {
        errors.push(new Error(`${s.label} logged ${complaints.length} unexpected warning(s)/error(s):\n${complaints.map((r) => JSON.stringify(r)).join('\n')}`))
      }
    }
    for (const d of this.dirs) {
      try { await removeDir(d) } catch (err) { errors.push(err) }
    }
    return errors
  }

  diagnostics () {
    return this.servers.map((s) => s.diagnostics()).join('\n')
  }
}

/**
 * A node:test test that gets a Session and always cleans it up; on failure the server logs are
 * printed. `opts.todo` marks a test that documents a known server divergence (see README.md).
 */
export function itest (name, fn, opts = {}) {
  return test(name, { timeout: 60_000, ...opts }, async (t) => {
    const session = new Session(t)
    let failure = null
    try {
      await fn(session, t)
    } catch (err) {
      failure = err
    }
    const cleanupErrors = await session.cleanup()
    if (!failure && cleanupErrors.length === 0) return
    const err = failure ?? (cleanupErrors.length === 1
      ? cleanupErrors[0]
      : new AggregateError(cleanupErrors, `cleanup failed: ${cleanupErrors.map((e) => e.message).join(' | ')}`))
    if (failure && cleanupErrors.length) {
      process.stderr.write(`[${name}] cleanup errors after failure:\n${cleanupErrors.map((e) => e.stack).join('\n')}\n`)
    }
    if (!opts.todo) process.stderr.write(`\n[${name}] FAILED; server logs follow\n${session.diagnostics()}\n`)
    throw err
  })
}
