// Helpers for embed.test.mjs: the embedding example (crates/tandem-server/examples/embed.rs, an
// axum app with Tandem nested at /collab) as a child process, a `ws` WebSocket class that sends a
// session cookie (what a browser does for the app's own origin), and plain HTTP requests.
//
// The process handling (spawn, wait for the listening line, SIGTERM with exit 0 within 10 s,
// diagnostics, cleanup by the test's Session) is TandemServer's, from lib/server.mjs; only what to
// run and how to read its output differ.

import http from 'node:http'
import { existsSync } from 'node:fs'
import path from 'node:path'
import WebSocket from 'ws'

import { TANDEM_BIN, TandemServer, makeTempDir } from './server.mjs'

/**
 * The example binary: $TANDEM_EMBED_BIN, else `examples/embed` next to TANDEM_BIN (cargo puts
 * `target/debug/examples/embed` beside `target/debug/tandem`).
 */
export const EMBED_BIN = process.env.TANDEM_EMBED_BIN
  ? path.resolve(process.env.TANDEM_EMBED_BIN)
  : path.join(path.dirname(TANDEM_BIN), 'examples', 'embed')

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g

/** Parses a tracing-subscriber text log line (`TIMESTAMP  LEVEL spans: target: message k=v`). */
export function parseTextLog (line) {
  const m = /^(\S+)\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(.*)$/.exec(line)
  if (!m) return null
  // `fields.message` is the rest of the line: spans, target, message and fields as printed.
  return { timestamp: m[1], level: m[2], fields: { message: m[3] }, text: m[3] }
}

/**
 * The running example app. Environment: EMBED_ADDR (`listen`, port 0 by default), EMBED_DATA_DIR
 * (`dataDir`), RUST_LOG (TANDEM_INTEROP_RUST_LOG or info) and NO_COLOR. It prints
 * `listening on HOST:PORT` on stdout, and its text logs go to stdout too; they are parsed into
 * `records` (`level`, `fields.message`), so the Session's end-of-test checks (no WARN / ERROR
 * line, no panic, exit 0 on SIGTERM) apply to it as to `tandem serve`.
 */
export class EmbedApp extends TandemServer {
  /** @param {{ dataDir: string, bin?: string, env?: Record<string, string>, label?: string, listen?: string }} opts */
  constructor ({ dataDir, bin = EMBED_BIN, env = {}, label, listen = '127.0.0.1:0' }) {
    super({ dataDir, bin, env, label, listen })
  }

  /** The y-websocket serverUrl: Tandem is nested at /collab (`/collab/ws/{document}`). */
  get wsUrl () { return `ws://${this.addr}/collab/ws` }

  spawnSpec () {
    return {
      command: this.bin,
      args: [],
      env: {
        ...process.env,
        RUST_LOG: process.env.TANDEM_INTEROP_RUST_LOG || 'info',
        NO_COLOR: '1',
        ...this.env,
        EMBED_ADDR: this.listen,
        EMBED_DATA_DIR: this.dataDir
      }
    }
  }

  get listeningWhat () { return 'print `listening on HOST:PORT` on stdout' }

  onStdoutLine (line) {
    const text = line.replace(ANSI, '')
    const listening = /^listening on (\S+:\d+)\s*$/.exec(text)
    if (listening) {
      if (this.addr === null) this.setAddr(listening[1])
      return
    }
    const rec = parseTextLog(text)
    if (rec) this.records.push(rec)
  }

  async start (opts) {
    if (!existsSync(this.bin)) {
      throw new Error(`embed example binary not found at ${this.bin} (build it with \`cargo build -p tandem-server --example embed\`, or set TANDEM_EMBED_BIN)`)
    }
    return super.start(opts)
  }

  /** Every stdout and stderr line, without colour codes. */
  logLines () {
    return [...this.stdoutLines, ...this.stderrLines].map((l) => l.replace(ANSI, ''))
  }
}

/**
 * Starts the example app for a test: on a new temp data dir (removed with the session), or on
 * `dataDir` (e.g. a stopped app's). The session stops it at the end (SIGTERM, exit 0) and checks
 * its logs.
 * @param {import('./harness.mjs').Session} session
 * @param {{ dataDir?: string, label?: string }} [opts]
 */
export async function startEmbed (session, { dataDir, label } = {}) {
  if (!dataDir) {
    dataDir = await makeTempDir('tandem-interop-embed-')
    session.dirs.push(dataDir)
  }
  const app = new EmbedApp({ dataDir, label: label ?? `embed#${session.servers.length + 1}` })
  session.servers.push(app)
  await app.start()
  return app
}

/**
 * A `ws` WebSocket class that sends `Cookie: <cookie>` with its handshake, for y-websocket's
 * `WebSocketPolyfill` option. y-websocket 1.x constructs it as `new WS(url)`, 2.x and 3.x as
 * `new WS(url, protocols)` (`protocols` defaults to `[]`); `ws` takes options third.
 * @param {string} cookie  e.g. `session=alice-session`
 */
export function cookieWebSocket (cookie) {
  return class CookieWebSocket extends WebSocket {
    constructor (url, protocols) {
      super(url, protocols ?? [], { headers: { Cookie: cookie } })
    }
  }
}

/**
 * One HTTP request on its own connection (no keep-alive, so nothing holds the app's graceful
 * shutdown): resolves to `{ status, headers, body }`.
 * @param {string} url
 * @param {{ method?: string, headers?: Record<string, string>, body?: string, timeout?: number }} [opts]
 */
export function request (url, { method = 'GET', headers = {}, body, timeout = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method,
      agent: false,
      headers: { ...(body === undefined ? {} : { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }), ...headers },
      timeout
    }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no response within ${timeout} ms`)))
    req.on('error', reject)
    req.end(body)
  })
}
