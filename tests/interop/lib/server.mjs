// Start, stop and restart the real `tandem` binary, plus a deadline-bound polling helper.
//
// Every wait in this suite is for a condition with a deadline: no fixed sleeps.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

/** Repository root: tests/interop/lib -> ../../.. */
export const REPO_ROOT = path.resolve(here, '..', '..', '..')

/** The server binary under test: $TANDEM_BIN, else the debug build of the workspace. */
export const TANDEM_BIN = process.env.TANDEM_BIN
  ? path.resolve(process.env.TANDEM_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'tandem')

/**
 * [command, args] to run `bin` with `args`: a JavaScript file (lib/reference-server.cjs) is run
 * with this Node, anything else directly.
 */
export function binCommand (bin, args) {
  return /\.[cm]?js$/.test(bin) ? [process.execPath, [bin, ...args]] : [bin, args]
}

/** How long the server may take to print its `listening` line. */
export const START_TIMEOUT_MS = 20_000
/** How long the server may take to exit after SIGTERM. */
export const STOP_TIMEOUT_MS = 10_000

/**
 * Polls `predicate` (sync or async) until it returns a truthy value, which is returned.
 * Throws a descriptive error once `timeout` ms have passed. `detail`, when given, is called at
 * the deadline and its result is appended to the message (e.g. the state of both documents).
 *
 * @template T
 * @param {() => T | Promise<T>} predicate
 * @param {{ timeout?: number, interval?: number, what?: string, detail?: () => unknown }} [opts]
 * @returns {Promise<T>}
 */
export async function waitFor (predicate, { timeout = 10_000, interval = 20, what = 'condition', detail } = {}) {
  const start = Date.now()
  const deadline = start + timeout
  let lastError
  for (;;) {
    try {
      const value = await predicate()
      if (value) return value
      lastError = undefined
    } catch (err) {
      lastError = err
    }
    if (Date.now() >= deadline) break
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(1, deadline - Date.now()))))
  }
  let msg = `timed out after ${Date.now() - start} ms (limit ${timeout} ms) waiting for ${what}`
  if (lastError) msg += `\nlast predicate error: ${lastError.stack || lastError}`
  if (detail) {
    let d
    try { d = await detail() } catch (err) { d = `<detail() threw: ${err}>` }
    msg += `\n${typeof d === 'string' ? d : JSON.stringify(d, null, 2)}`
  }
  throw new Error(msg)
}

/** A fresh, empty temporary directory for a server's --data-dir. */
export async function makeTempDir (prefix = 'tandem-interop-') {
  return mkdtemp(path.join(os.tmpdir(), prefix))
}

export async function removeDir (dir) {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 })
}

/** Children still running when the test process exits are killed, so none is ever leaked. */
const liveChildren = new Set()
process.on('exit', () => {
  for (const child of liveChildren) {
    try { child.kill('SIGKILL') } catch {}
  }
})

let serverSeq = 0

/**
 * A running `tandem serve` process.
 */
export class TandemServer {
  /**
   * @param {{ dataDir: string, bin?: string, env?: Record<string, string>, extraArgs?: string[], label?: string, listen?: string }} opts
   */
  constructor ({ dataDir, bin = TANDEM_BIN, env = {}, extraArgs = [], label, listen = '127.0.0.1:0' }) {
    this.dataDir = dataDir
    this.listen = listen
    this.bin = bin
    this.env = env
    this.extraArgs = extraArgs
    this.label = label ?? `server#${++serverSeq}`
    /** @type {string[]} raw stdout lines */
    this.stdoutLines = []
    /** @type {string[]} raw stderr lines */
    this.stderrLines = []
    /** @type {any[]} parsed JSON log records from stdout */
    this.records = []
    this.child = null
    this.addr = null
    this.port = null
    /** @type {{ code: number | null, signal: string | null } | null} */
    this.exit = null
    this.exitPromise = null
    this.stopRequested = false
    /** @type {{ code: number | null, signal: string | null, ms: number } | null} */
    this.stopResult = null
  }

  /** `ws://127.0.0.1:PORT/ws`: the y-websocket serverUrl (the provider appends `/room`). */
  get wsUrl () { return `ws://${this.addr}/ws` }
  get httpUrl () { return `http://${this.addr}` }
  get running () { return this.child !== null && this.exit === null }

  /**
   * What to run: `tandem serve` on `listen` and `dataDir` with JSON logs. A subclass running
   * another program overrides this, `onStdoutLine` and `listeningWhat` (see lib/embed.mjs).
   * @returns {{ command: string, args: string[], env: Record<string, string> }}
   */
  spawnSpec () {
    const args = ['serve', '--addr', this.listen, '--data-dir', this.dataDir, '--log-format', 'json', ...this.extraArgs]
    const [command, commandArgs] = binCommand(this.bin, args)
    return {
      command,
      args: commandArgs,
      env: { ...process.env, RUST_LOG: process.env.TANDEM_INTEROP_RUST_LOG || 'info', ...this.env }
    }
  }

  /** What `start()` waits for, for its timeout message. */
  get listeningWhat () { return 'log {"message":"listening","addr":...} on stdout' }

  /**
   * Handles one stdout line (already in `stdoutLines`): parses a JSON log record into `records`
   * and takes the address from the `listening` record.
   */
  onStdoutLine (line) {
    try {
      const rec = JSON.parse(line)
      this.records.push(rec)
      const fields = rec.fields ?? rec
      if (fields.message === 'listening' && typeof fields.addr === 'string' && this.addr === null) {
        this.setAddr(fields.addr)
      }
    } catch {
      // not JSON: kept in stdoutLines for diagnostics
    }
  }

  /** Records the address the process listens on (`HOST:PORT`). */
  setAddr (addr) {
    this.addr = addr
    this.port = Number(addr.slice(addr.lastIndexOf(':') + 1))
  }

  /** Spawns the server and resolves once it logged `listening` (parsed `addr`). */
  async start ({ timeout = START_TIMEOUT_MS } = {}) {
    if (!existsSync(this.bin)) {
      throw new Error(`tandem binary not found at ${this.bin} (set TANDEM_BIN)`)
    }
    const { command, args: commandArgs, env } = this.spawnSpec()
    const child = spawn(command, commandArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    liveChildren.add(child)
    this.exitPromise = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal }
        liveChildren.delete(child)
        resolve(this.exit)
      })
    })
    let spawnError = null
    child.on('error', (err) => { spawnError = err })

    const split = (stream, onLine) => {
      let buf = ''
      stream.setEncoding('utf8')
      stream.on('data', (chunk) => {
        buf += chunk
        let i
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i))
          buf = buf.slice(i + 1)
        }
      })
      stream.on('end', () => { if (buf) onLine(buf) })
    }
    split(child.stdout, (line) => {
      this.stdoutLines.push(line)
      this.onStdoutLine(line)
    })
    split(child.stderr, (line) => { this.stderrLines.push(line) })

    try {
      await waitFor(() => {
        if (spawnError) throw new Error(`spawn failed: ${spawnError.message}`)
        if (this.exit) throw new Error(`server exited before listening: ${JSON.stringify(this.exit)}`)
        return this.addr !== null
      }, {
        timeout,
        interval: 10,
        what: `${this.label} to ${this.listeningWhat}`
      })
    } catch (err) {
      if (this.running) child.kill('SIGKILL')
      err.message += `\n${this.diagnostics()}`
      throw err
    }
    return this
  }

  /**
   * Sends SIGTERM and asserts a clean exit (code 0, no signal) within `timeout` ms.
   * If the process does not exit in time it is SIGKILLed and an error is thrown.
   * @returns {Promise<{ code: number | null, signal: string | null, ms: number }>}
   */
  async stop ({ timeout = STOP_TIMEOUT_MS } = {}) {
    if (!this.child) throw new Error(`${this.label} was never started`)
    if (this.exit) {
      throw new Error(`${this.label} had already exited before SIGTERM: ${JSON.stringify(this.exit)}\n${this.diagnostics()}`)
    }
    this.stopRequested = true
    const t0 = Date.now()
    this.child.kill('SIGTERM')
    let timer
    const result = await Promise.race([
      this.exitPromise,
      new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeout) })
    ])
    clearTimeout(timer)
    const ms = Date.now() - t0
    if (result === null) {
      this.child.kill('SIGKILL')
      await this.exitPromise
      throw new Error(`${this.label} did not exit within ${timeout} ms of SIGTERM (killed)\n${this.diagnostics()}`)
    }
    if (result.code !== 0 || result.signal !== null) {
      throw new Error(`${this.label} exited after SIGTERM with code=${result.code} signal=${result.signal} (want code 0) after ${ms} ms\n${this.diagnostics()}`)
    }
    this.stopResult = { ...result, ms }
    return this.stopResult
  }

  /** Last resort (cleanup only): SIGKILL if still running. */
  async kill () {
    if (this.running) {
      this.child.kill('SIGKILL')
      await this.exitPromise
    }
  }

  /** Log records (parsed JSON) at the given level, e.g. 'ERROR'. */
  recordsAt (level) {
    return this.records.filter((r) => r.level === level)
  }

  /** Human-readable dump of everything the process printed. */
  diagnostics ({ maxLines = 200 } = {}) {
    const tail = (lines) => lines.length > maxLines
      ? [`... (${lines.length - maxLines} earlier lines omitted)`, ...lines.slice(-maxLines)]
      : lines
    return [
      `----- ${this.label}: ${this.bin} (data dir ${this.dataDir}, addr ${this.addr}, exit ${JSON.stringify(this.exit)}) -----`,
      '--- stdout ---',
      ...tail(this.stdoutLines),
      '--- stderr ---',
      ...tail(this.stderrLines),
      `----- end ${this.label} -----`
    ].join('\n')
  }
}

/**
 * Starts a server on port 0. `dataDir` defaults to a new temp dir (the caller removes it).
 * @param {{ dataDir?: string, env?: Record<string, string>, extraArgs?: string[], label?: string }} [opts]
 */
export async function startServer (opts = {}) {
  const dataDir = opts.dataDir ?? await makeTempDir()
  const server = new TandemServer({ ...opts, dataDir })
  await server.start()
  return server
}

/**
 * Stops `server` (asserting exit code 0 within 10 s) and starts a new one on the same data dir:
 * on a new port, or with `samePort` on the port the old one had.
 * @param {TandemServer} server
 */
export async function restartServer (server, { label, samePort = false } = {}) {
  await server.stop()
  const next = new TandemServer({
    dataDir: server.dataDir,
    bin: server.bin,
    env: server.env,
    extraArgs: server.extraArgs,
    label: label ?? `${server.label}'`,
    listen: samePort ? server.addr : '127.0.0.1:0'
  })
  await next.start()
  return next
}
