// Helpers for auth.test.mjs: a temp HS256 secret, tokens minted by the binary's own `tandem token`
// subcommand, a raw `ws` handshake that reports the HTTP status of a refused upgrade, a tap on the
// messages a y-websocket provider receives (to see y-protocols auth and awareness messages), a raw
// peer that records every message the server sends it, a raw reader of the server's document
// state, and the check that no secret ever reaches the server's logs.
//
// Nothing here changes how the rest of the suite behaves; only auth.test.mjs and embed.test.mjs
// import it.

import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import WebSocket from 'ws'

import { TANDEM_BIN, binCommand, makeTempDir } from './server.mjs'

const execFileAsync = promisify(execFile)

/** True when TANDEM_BIN is lib/reference-server.cjs, which has no authentication at all. */
export const IS_REFERENCE_SERVER = /\.[cm]?js$/.test(TANDEM_BIN)

/** y-protocols top-level message types (the first varUint of every message). */
export const MESSAGE_SYNC = 0
export const MESSAGE_AWARENESS = 1
export const MESSAGE_AUTH = 2
export const MESSAGE_QUERY_AWARENESS = 3
/** Sync sub-types. */
export const SYNC_STEP1 = 0
export const SYNC_STEP2 = 1
export const SYNC_UPDATE = 2
/** y-protocols auth sub-type. */
export const AUTH_PERMISSION_DENIED = 0

// ---- a minimal lib0 varUint / varString codec (no dependency on transitive packages) ----------

/** Reads a lib0 varUint at `pos`; returns [value, nextPos]. */
export function readVarUint (bytes, pos) {
  let value = 0
  let mult = 1
  for (;;) {
    if (pos >= bytes.length) throw new Error('varUint runs past the end of the message')
    const b = bytes[pos++]
    value += (b & 0x7f) * mult
    mult *= 128
    if (b < 0x80) return [value, pos]
    if (mult > 2 ** 53) throw new Error('varUint too large')
  }
}

/** Reads a lib0 varString (varUint length + UTF-8) at `pos`; returns [string, nextPos]. */
export function readVarString (bytes, pos) {
  const [len, start] = readVarUint(bytes, pos)
  if (start + len > bytes.length) throw new Error('varString runs past the end of the message')
  return [Buffer.from(bytes.subarray(start, start + len)).toString('utf8'), start + len]
}

/** Reads a lib0 varUint8Array at `pos`; returns [Uint8Array, nextPos]. */
export function readVarUint8Array (bytes, pos) {
  const [len, start] = readVarUint(bytes, pos)
  if (start + len > bytes.length) throw new Error('varUint8Array runs past the end of the message')
  return [bytes.subarray(start, start + len), start + len]
}

/** Appends `n` as a lib0 varUint to the array `out`; returns `out`. */
export function writeVarUint (out, n) {
  while (n > 0x7f) {
    out.push(0x80 | (n % 128))
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

// ---- secret and tokens ----------------------------------------------------------------------

/**
 * A temp HS256 secret file and the tokens minted with it. Records every token (and the secret) so
 * that the server's logs can be searched for them at the end.
 */
export class AuthKit {
  /**
   * @param {import('./harness.mjs').Session} session  the temp dir is removed with the session's
   */
  static async create (session) {
    const dir = await makeTempDir('tandem-interop-auth-')
    session.dirs.push(dir)
    const file = path.join(dir, 'jwt-secret')
    // 48 random bytes as base64: 64 printable bytes, plus the one trailing newline the server
    // ignores.
    const secret = randomBytes(48).toString('base64')
    await writeFile(file, `${secret}\n`, { mode: 0o600 })
    return new AuthKit(file, secret)
  }

  constructor (file, secret) {
    this.secretFile = file
    this.secret = secret
    /** @type {Set<string>} every token handed to a client in this test */
    this.tokens = new Set()
  }

  /** `tandem serve` arguments for this secret. */
  get serveArgs () { return ['--jwt-secret-file', this.secretFile] }

  /**
   * Runs `tandem token --jwt-secret-file FILE --doc D... --rights R --ttl T [--sub S]` and returns
   * the token it printed.
   * @param {{ docs: string[], rights: string, ttl?: string, sub?: string }} opts
   */
  async mint ({ docs, rights, ttl = '1h', sub }) {
    const args = ['token', '--jwt-secret-file', this.secretFile, '--rights', rights, '--ttl', ttl]
    for (const d of docs) args.push('--doc', d)
    if (sub) args.push('--sub', sub)
    const [command, commandArgs] = binCommand(TANDEM_BIN, args)
    const { stdout } = await execFileAsync(command, commandArgs, { timeout: 10_000 })
    const token = stdout.trim()
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
      throw new Error(`\`tandem ${args.join(' ')}\` did not print a JWT: ${JSON.stringify(stdout)}`)
    }
    this.tokens.add(token)
    return token
  }

  /** Records a string sent as a token that was not minted (e.g. garbage), to search logs for it. */
  remember (token) {
    this.tokens.add(token)
    return token
  }

  /**
   * The strings that must never appear in a log: every token, its payload and signature segments
   * on their own (a log line that printed half a token leaks it as well), and the secret. The
   * header segment is left out: it is the same for every HS256 token and carries nothing.
   */
  needles () {
    const needles = new Map()
    let i = 0
    for (const token of this.tokens) {
      const parts = token.split('.')
      const name = `token #${++i} ${describeToken(token)}`
      needles.set(token, name)
      if (parts.length === 3) {
        needles.set(parts[1], `payload of ${name}`)
        needles.set(parts[2], `signature of ${name}`)
      }
    }
    needles.set(this.secret, 'the JWT secret')
    return needles
  }

  /**
   * Every log line of `server` (stdout and stderr, raw text) that contains a token, part of one,
   * or the secret, as `{ what, line }`.
   * @param {import('./server.mjs').TandemServer} server
   */
  leaks (server) {
    const needles = this.needles()
    const found = []
    for (const line of [...server.stdoutLines, ...server.stderrLines]) {
      for (const [needle, what] of needles) {
        if (line.includes(needle)) found.push({ what, line: line.length > 400 ? `${line.slice(0, 400)}...` : line })
      }
    }
    return found
  }
}

/** A JWT's claims (not its signature), for messages; anything else is described by its length. */
export function describeToken (token) {
  try {
    return JSON.stringify(JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')))
  } catch {
    return `(not a JWT, ${token.length} chars)`
  }
}

/** A JWT's claims (payload, not verified). */
export function tokenClaims (token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'))
}

// ---- raw WebSocket clients --------------------------------------------------------------------

/**
 * Opens a raw `ws` WebSocket to `url` and reports how the handshake ended:
 * `{ status: 101, ws }` when it was upgraded (the caller closes `ws`), or
 * `{ status, headers, body }` when the server answered with another HTTP response.
 * `onOpen(ws)`, when given, is called synchronously on 'open', before any frame can be delivered
 * (the promise settles later: frames the server sent right after the upgrade may be delivered
 * before the caller's continuation runs).
 * @param {string} url
 * @param {{ headers?: Record<string, string>, timeout?: number, onOpen?: (ws: WebSocket) => void }} [opts]
 */
export function handshake (url, { headers = {}, timeout = 10_000, onOpen } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    let settled = false
    const finish = (fn, value) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      fn(value)
    }
    const timer = setTimeout(() => {
      ws.terminate()
      finish(reject, new Error(`no handshake outcome for ${redact(url)} within ${timeout} ms`))
    }, timeout)
    ws.on('open', () => {
      if (onOpen) onOpen(ws)
      finish(resolve, { status: 101, ws })
    })
    ws.on('unexpected-response', (req, res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        finish(resolve, { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') })
        ws.terminate()
      })
      res.on('error', (err) => finish(reject, err))
    })
    // terminate() after 'unexpected-response' makes `ws` report an error; by then the outcome is
    // settled and the error means nothing.
    ws.on('error', (err) => finish(reject, err))
  })
}

/** A URL with any `token=` query value replaced, for error messages. */
export function redact (url) {
  return String(url).replace(/([?&]token=)[^&\s]*/g, '$1<redacted>')
}

/**
 * The server's whole state of a document as the server itself encodes it: connects a raw client
 * (with `token`), sends sync step 1 with an empty state vector and returns the payload of the
 * server's sync step 2, which is the server's full document as one update.
 * @param {string} url  `ws://HOST:PORT/ws/DOC?token=...`
 */
export async function fetchServerState (url, { timeout = 10_000 } = {}) {
  const outcome = await handshake(url, { timeout })
  if (outcome.status !== 101) throw new Error(`fetchServerState: handshake refused with ${outcome.status}: ${outcome.body}`)
  const ws = outcome.ws
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no sync step 2 from the server within ${timeout} ms`)), timeout)
      ws.on('message', (data) => {
        const bytes = new Uint8Array(data)
        try {
          const [type, pos] = readVarUint(bytes, 0)
          if (type !== MESSAGE_SYNC) return
          const [sub, pos2] = readVarUint(bytes, pos)
          if (sub !== SYNC_STEP2) return
          clearTimeout(timer)
          resolve(Buffer.from(readVarUint8Array(bytes, pos2)[0]))
        } catch (err) {
          clearTimeout(timer)
          reject(err)
        }
      })
      ws.on('close', (code) => { clearTimeout(timer); reject(new Error(`closed (${code}) before sync step 2`)) })
      // sync step 1 with the state vector of an empty document (varUint8Array [0]).
      ws.send(Uint8Array.from([MESSAGE_SYNC, SYNC_STEP1, 1, 0]))
    })
  } finally {
    ws.removeAllListeners('close')
    ws.close()
  }
}

/**
 * The entries of an encoded awareness update (y-protocols/awareness): `{ client, clock, state }`,
 * `state` parsed from its JSON (`null` for a removal).
 */
export function awarenessEntries (update) {
  const entries = []
  let [count, pos] = readVarUint(update, 0)
  while (count-- > 0) {
    let client, clock, json
    ;[client, pos] = readVarUint(update, pos)
    ;[clock, pos] = readVarUint(update, pos)
    ;[json, pos] = readVarString(update, pos) // "null" when removed
    entries.push({ client, clock, state: JSON.parse(json) })
  }
  return entries
}

/** The client ids an encoded awareness update (y-protocols/awareness) names. */
export function awarenessClientIds (update) {
  return awarenessEntries(update).map((e) => e.client)
}

/** A y-protocols sync update message (`[0, 2, update]`) carrying `update`. */
export function updateMessage (update) {
  return Uint8Array.from([...writeVarUint([MESSAGE_SYNC, SYNC_UPDATE], update.length), ...update])
}

/**
 * Splits one WebSocket frame into its y-protocols messages: `{ type, sub, payload, entries }`
 * (`sub` for sync and auth, `payload` the sync update / awareness update / auth reason, `entries`
 * the decoded awareness entries). A message of a type it does not know ends the frame (`type`
 * recorded, the rest kept as `payload`).
 */
export function decodeFrame (bytes) {
  const messages = []
  let pos = 0
  while (pos < bytes.length) {
    let type
    ;[type, pos] = readVarUint(bytes, pos)
    if (type === MESSAGE_SYNC) {
      let sub, payload
      ;[sub, pos] = readVarUint(bytes, pos)
      ;[payload, pos] = readVarUint8Array(bytes, pos)
      messages.push({ type, sub, payload })
    } else if (type === MESSAGE_AWARENESS) {
      let payload
      ;[payload, pos] = readVarUint8Array(bytes, pos)
      messages.push({ type, sub: null, payload, entries: awarenessEntries(payload) })
    } else if (type === MESSAGE_AUTH) {
      let sub, reason
      ;[sub, pos] = readVarUint(bytes, pos)
      ;[reason, pos] = readVarString(bytes, pos)
      messages.push({ type, sub, payload: reason })
    } else if (type === MESSAGE_QUERY_AWARENESS) {
      messages.push({ type, sub: null, payload: null })
    } else {
      messages.push({ type, sub: null, payload: bytes.subarray(pos) })
      break
    }
  }
  return messages
}

/**
 * A raw WebSocket peer of a document that only listens (and sends what the test tells it to):
 * every message the server sends it is recorded, decoded, from the first frame on.
 */
export class RawPeer {
  /**
   * Opens `url`; resolves to a RawPeer once upgraded, throws if the handshake is refused.
   * @param {string} url
   * @param {{ headers?: Record<string, string>, label?: string }} [opts]
   */
  static async open (url, { headers = {}, label = 'raw peer' } = {}) {
    let peer = null
    const outcome = await handshake(url, { headers, onOpen: (ws) => { peer = new RawPeer(ws, label) } })
    if (outcome.status !== 101) throw new Error(`${label}: handshake refused with ${outcome.status}: ${outcome.body}`)
    return peer
  }

  constructor (ws, label) {
    this.ws = ws
    this.label = label
    /** @type {Array<{ type: number, sub: number | null, payload: any, entries?: Array<{ client: number, clock: number, state: any }> }>} */
    this.messages = []
    /** `{ code, reason }` once closed. */
    this.closeEvent = null
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeEvent = { code, reason: reason.toString('utf8') }
        resolve(this.closeEvent)
      })
    })
    // Constructed synchronously in 'open' (see `open`), so no frame is missed.
    ws.on('message', (data) => {
      for (const m of decodeFrame(new Uint8Array(data))) this.messages.push(m)
    })
  }

  count (type, sub = undefined) {
    return this.messages.filter((m) => m.type === type && (sub === undefined || m.sub === sub)).length
  }

  /** Every awareness entry received, in order. */
  get awarenessEntries () {
    return this.messages.filter((m) => m.type === MESSAGE_AWARENESS).flatMap((m) => m.entries)
  }

  /** Every client id named in an awareness message received. */
  get awarenessClients () {
    return new Set(this.awarenessEntries.map((e) => e.client))
  }

  /** The payloads of every sync update message received. */
  get updates () {
    return this.messages.filter((m) => m.type === MESSAGE_SYNC && m.sub === SYNC_UPDATE).map((m) => m.payload)
  }

  send (bytes) { this.ws.send(bytes) }

  close () {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close()
    return this.closed
  }
}

// ---- y-websocket provider taps -----------------------------------------------------------------

/**
 * Records every message a y-websocket provider receives from its WebSocket, by wrapping the
 * provider's own per-instance `messageHandlers` table (all of 1.x, 2.x and 3.x dispatch through
 * `provider.messageHandlers[type]`, a copy made in the constructor). The original handlers still
 * run, so the provider behaves exactly as before: for auth messages that is the module-private
 * `permissionDeniedHandler`, which console.warns. y-websocket exports no hook for it.
 *
 * @returns {{ kinds: Array<[number, number | null]>, denied: string[], awarenessClients: Set<number>, awarenessEntries: Array<{ client: number, clock: number, state: any }>, count: (type: number, sub?: number | null) => number, restore: () => void }}
 */
export function tapProvider (provider) {
  const originals = provider.messageHandlers.slice()
  const tap = {
    /** [type, subtype] of every message received, in order. */
    kinds: [],
    /** The reason of every permission-denied auth message received, in order. */
    denied: [],
    /** Every client id named in an awareness message received (state set or removed). */
    awarenessClients: new Set(),
    /** Every awareness entry received, in order: `{ client, clock, state }` (`state` null: removed). */
    awarenessEntries: [],
    count (type, sub = undefined) {
      return this.kinds.filter(([t, s]) => t === type && (sub === undefined || s === sub)).length
    },
    restore () { provider.messageHandlers.splice(0, provider.messageHandlers.length, ...originals) }
  }
  originals.forEach((original, type) => {
    if (typeof original !== 'function') return
    provider.messageHandlers[type] = (encoder, decoder, ...rest) => {
      // Peek at the message from the decoder's position (just past the type) without moving it.
      const bytes = decoder.arr
      let sub = null
      if (type === MESSAGE_SYNC || type === MESSAGE_AUTH) {
        const [s, pos] = readVarUint(bytes, decoder.pos)
        sub = s
        if (type === MESSAGE_AUTH && s === AUTH_PERMISSION_DENIED) tap.denied.push(readVarString(bytes, pos)[0])
      } else if (type === MESSAGE_AWARENESS) {
        for (const entry of awarenessEntries(readVarUint8Array(bytes, decoder.pos)[0])) {
          tap.awarenessClients.add(entry.client)
          tap.awarenessEntries.push(entry)
        }
      }
      tap.kinds.push([type, sub])
      return original(encoder, decoder, ...rest)
    }
  })
  return tap
}

/**
 * Captures console.warn calls whose text matches `pattern` (they are not printed: y-websocket's
 * permission-denied warning includes the provider URL, token and all); anything else is passed
 * through to the real console.warn. Call `restore()` when done.
 */
export function captureConsoleWarn (pattern) {
  const original = console.warn
  const captured = []
  console.warn = (...args) => {
    const text = args.map((a) => (typeof a === 'string' ? a : String(a))).join(' ')
    if (pattern.test(text)) captured.push(text)
    else original.apply(console, args)
  }
  return {
    captured,
    restore () { console.warn = original }
  }
}
