// Per-test session: owns the servers, data dirs and clients a test creates, and tears all of them
// down when the test ends, whether it passed or failed. On failure the servers' logs are printed.
//
// This module does not import `yjs`: every client is given the `Y` module and the provider class
// it must use, so a CommonJS stack (y-websocket 1.x dist + yjs CJS) and the ESM stack never meet in
// one process.

import test from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import WebSocket from 'ws'

import { TandemServer, makeTempDir, removeDir, restartServer, startServer, waitFor } from './server.mjs'

export { waitFor }

/** Deadline for one provider to connect and sync. */
export const SYNC_TIMEOUT_MS = 10_000
/** Deadline for documents to converge after an edit. */
export const CONVERGE_TIMEOUT_MS = 10_000

let clientSeq = 0

// Every y-websocket provider adds a process 'exit' listener; tests with many clients exceed the
// default limit of 10 and Node would print a (false) leak warning.
process.setMaxListeners(Math.max(process.getMaxListeners(), 200))

/**
 * One y-websocket client: its own Y.Doc and a WebsocketProvider of a given y-websocket version.
 */
export class Client {
  /**
   * `WebSocketPolyfill` (default: `ws`) is the WebSocket class the provider uses, e.g. a `ws`
   * subclass that sends a cookie (lib/embed.mjs).
   * @param {{ Y: any, Provider: any, version: string, serverUrl: string, room: string, connect?: boolean, label?: string, params?: Record<string, string>, WebSocketPolyfill?: typeof WebSocket }} opts
   */
  constructor ({ Y, Provider, version, serverUrl, room, connect = true, label, params, WebSocketPolyfill = WebSocket }) {
    this.Y = Y
    this.version = version
    this.room = room
    this.label = label ?? `${version}#${++clientSeq}`
    this.doc = new Y.Doc()
    // Define the root types up front so every snapshot and doc.toJSON() covers the same keys.
    this.text = this.doc.getText('text')
    this.map = this.doc.getMap('map')
    this.array = this.doc.getArray('array')
    this.provider = new Provider(serverUrl, room, this.doc, {
      WebSocketPolyfill,
      disableBc: true,
      connect,
      resyncInterval: -1,
      ...(params ? { params } : {})
    })
    this.destroyed = false
  }

  get awareness () { return this.provider.awareness }
  get clientID () { return this.doc.clientID }

  /** Resolves on the provider's `synced` event (or at once if it already is synced). */
  synced ({ timeout = SYNC_TIMEOUT_MS } = {}) {
    const provider = this.provider
    if (provider.synced) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const onSync = (isSynced) => {
        if (!isSynced) return
        clearTimeout(timer)
        provider.off('synced', onSync)
        resolve()
      }
      const timer = setTimeout(() => {
        provider.off('synced', onSync)
        reject(new Error(`${this.label} (room ${JSON.stringify(this.room)}, url ${provider.url}) did not emit 'synced' within ${timeout} ms; wsconnected=${provider.wsconnected} wsconnecting=${provider.wsconnecting}`))
      }, timeout)
      provider.on('synced', onSync)
    })
  }

  /** Everything we compare between replicas. */
  snapshot () {
    return {
      stateVector: Buffer.from(this.Y.encodeStateVector(this.doc)).toString('hex'),
      text: this.text.toDelta(),
      map: this.map.toJSON(),
      array: this.array.toJSON(),
      doc: this.doc.toJSON()
    }
  }

  /** Client ids (as numbers) that this replica has seen operations from. */
  knownClients () {
    return [...this.Y.decodeStateVector(this.Y.encodeStateVector(this.doc)).keys()]
  }

  /**
   * provider.disconnect(), then waits until the socket is fully CLOSED. Until the close handshake
   * completes a socket can still deliver frames, and y-websocket 2.x keeps handling them after
   * disconnect() (it drops `provider.ws` at once but leaves the handlers attached; 3.x detaches
   * them), so `provider.ws === null` alone does not mean "offline" there.
   */
  async disconnect ({ timeout = SYNC_TIMEOUT_MS } = {}) {
    const socket = this.provider.ws
    this.provider.disconnect()
    await waitFor(() => (socket === null || socket.readyState === WebSocket.CLOSED) &&
      !this.provider.wsconnected && this.provider.ws === null, {
      timeout,
      what: `${this.label} to disconnect (socket CLOSED)`
    })
  }

  destroy () {
    if (this.destroyed) return
    this.destroyed = true
    this.provider.destroy()
    this.doc.destroy()
  }
}

/**
 * Waits until all clients have identical snapshots (state vector, text delta, map, array, doc JSON).
 * @param {Client[]} clients
 */
export async function waitConverged (clients, { timeout = CONVERGE_TIMEOUT_MS, what = 'documents to converge' } = {}) {
  const labels = clients.map((c) => c.label).join(', ')
  await waitFor(() => {
    const first = clients[0].snapshot()
    return clients.slice(1).every((c) => isDeepStrictEqual(c.snapshot(), first))
  }, {
    timeout,
    what: `${what} [${labels}]`,
    detail: () => Object.fromEntries(clients.map((c) => [c.label, c.snapshot()]))
  })
  return clients[0].snapshot()
}

export class Session {
  constructor (t) {
    this.t = t
    /** @type {import('./server.mjs').TandemServer[]} */
    this.servers = []
    /** @type {Client[]} */
    this.clients = []
    this.dirs = []
  }

  /** Starts a server on port 0 with a fresh temp data dir. */
  async server (opts = {}) {
    const dataDir = await makeTempDir()
    this.dirs.push(dataDir)
    const server = await startServer({ ...opts, dataDir, label: opts.label ?? `server#${this.servers.length + 1}` })
    this.servers.push(server)
    return server
  }

  /** Starts a server on an existing data dir (e.g. a stopped server's), optionally on a fixed address. */
  async start ({ dataDir, listen, label, ...opts }) {
    const server = new TandemServer({ ...opts, dataDir, listen, label: label ?? `server#${this.servers.length + 1}` })
    this.servers.push(server)
    await server.start()
    return server
  }

  /** SIGTERM (asserting exit 0 within 10 s), then a new server on the same data dir and a new port. */
  async restart (server) {
    const next = await restartServer(server, { label: `server#${this.servers.length + 1} (restart of ${server.label})` })
    this.t?.diagnostic(`${server.label} exited with code 0 ${server.stopResult.ms} ms after SIGTERM`)
    this.servers.push(next)
    return next
  }

  /**
   * @param {{ Y: any, Provider: any, version: string }} stack
   * @param {import('./server.mjs').TandemServer} server
   * @param {string} room
   * @param {{ connect?: boolean, label?: string, params?: Record<string, string>, WebSocketPolyfill?: typeof WebSocket }} [opts]
   */
  client (stack, server, room, opts = {}) {
    const c = new Client({ ...stack, serverUrl: server.wsUrl, room, ...opts })
    this.clients.push(c)
    return c
  }

  /** Creates a client and waits for its `synced` event. */
  async syncedClient (stack, server, room, opts = {}) {
    const c = this.client(stack, server, room, opts)
    await c.synced()
    return c
  }

  /**
   * Declares that `server` must log exactly `count` WARN records whose message is `message`,
   * because the test provokes them on purpose (a client refused for breaking a limit): those
   * records are not complaints at the end of the test, and a different number of them is an
   * error. Every other WARN or ERROR record still fails the test.
   * @param {import('./server.mjs').TandemServer} server
   * @param {string} message  the record's `fields.message`, exactly
   */
  expectWarning (server, message, count = 1) {
    server.expectedWarnings ??= new Map()
    server.expectedWarnings.set(message, (server.expectedWarnings.get(message) ?? 0) + count)
  }

  /** Tears everything down; returns the errors found (never throws). */
  async cleanup () {
    const errors = []
    for (const c of this.clients) {
      try { c.destroy() } catch (err) { errors.push(err) }
    }
    for (const s of this.servers) {
      try {
        if (s.running) {
          await s.stop()
        } else if (s.exit && !s.stopRequested) {
          errors.push(new Error(`${s.label} exited on its own during the test: ${JSON.stringify(s.exit)}`))
        }
      } catch (err) {
        errors.push(err)
        await s.kill().catch(() => {})
      }
      const panics = s.stderrLines.filter((l) => l.includes('panicked'))
      if (panics.length) errors.push(new Error(`${s.label} panicked:\n${panics.join('\n')}`))
      // Nothing in these tests is abnormal, so the server has nothing to warn about (beyond the
      // startup notice that no authentication is configured, and the WARN records a test
      // declared with `expectWarning`, which must then appear exactly as often as declared).
      const expected = s.expectedWarnings ?? new Map()
      const complaints = s.records.filter((r) => (r.level === 'WARN' || r.level === 'ERROR') &&
        !String(r.fields?.message).startsWith('no authentication configured') &&
        !(r.level === 'WARN' && expected.has(r.fields?.message)))
      for (const [message, count] of expected) {
        const seen = s.records.filter((r) => r.level === 'WARN' && r.fields?.message === message).length
        if (seen !== count) {
          errors.push(new Error(`${s.label} logged ${seen} WARN record(s) ${JSON.stringify(message)}, the test expected exactly ${count}`))
        }
      }
      if (complaints.length) {
        errors.push(new Error(`${s.label} logged ${complaints.length} warning(s)/error(s):\n${complaints.map((r) => JSON.stringify(r)).join('\n')}`))
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
 * A node:test test that gets a Session and always cleans it up. When the test (or its cleanup)
 * fails, the server logs are printed to stderr and attached to the error.
 *
 * @param {string} name
 * @param {(s: Session, t: import('node:test').TestContext) => Promise<void>} fn
 * @param {{ timeout?: number }} [opts]
 */
export function itest (name, fn, opts = {}) {
  return test(name, { timeout: 120_000, ...opts }, async (t) => {
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
    process.stderr.write(`\n[${name}] FAILED; server logs follow\n${session.diagnostics()}\n`)
    throw err
  })
}
