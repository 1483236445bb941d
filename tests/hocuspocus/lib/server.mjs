// Start, stop and restart the real `tandem` binary; mint tokens with `tandem token`; a
// deadline-bound polling helper. (Patterns from tests/interop/lib/server.mjs.)
//
// Every wait in this suite is for a condition with a deadline: no fixed sleeps.

import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const here = path.dirname(fileURLToPath(import.meta.url))

/** Repository root: tests/hocuspocus/lib -> ../../.. */
export const REPO_ROOT = path.resolve(here, '..', '..', '..')

/** The server binary under test: $TANDEM_BIN, else the debug build of the workspace. */
export const TANDEM_BIN = process.env.TANDEM_BIN
  ? path.resolve(process.env.TANDEM_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'tandem')

/** How long the server may take to print its `listening` line. */
export const START_TIMEOUT_MS = 20_000
/** How long the server may take to exit after SIGTERM. */
export const STOP_TIMEOUT_MS = 10_000

/**
 * Polls `predicate` (sync or async) until it returns a truthy value, which is returned.
 * Throws a descriptive error once `timeout` ms have passed; `detail()` is appended to it.
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

export async function makeTempDir (prefix = 'tandem-hocuspocus-') {
  return mkdtemp(path.join(os.tmpdir(), prefix))
}

export async function removeDir (dir) {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 })
}

/** A fresh HS256 secret (48 random bytes, base64) written to a file in `dir`. */
export async function writeSecret (dir) {
  const file = path.join(dir, 'secret.key')
  const { randomBytes } = await import('node:crypto')
  await writeFile(file, randomBytes(48).toString('base64') + '\n', { mode: 0o600 })
  return file
}

const execFileP = promisify(execFile)

/**
 * A token minted by the real `tandem token` command.
 * @param {{ secretFile: string, docs: string[], rights?: string, ttl?: string, sub?: string }} opts
 */
export async function mintToken ({ secretFile, docs, rights = 'write', ttl = '1h', sub }) {
  const args = ['token', '--jwt-secret-file', secretFile, '--rights', rights, '--ttl', ttl]
  for (const doc of docs) args.push('--doc', doc)
  if (sub) args.push('--sub', sub)
  const { stdout } = await execFileP(TANDEM_BIN, args)
  const token = stdout.trim()
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error(`tandem token printed no JWT: ${JSON.stringify(stdout)}`)
  return token
}

/** Children still running when the test process exits are killed, so none is ever leaked. */
const liveChildren = new Set()
process.on('exit', () => {
  for (const child of liveChildren) {
    try { child.kill('SIGKILL') } catch {}
  }
})

let serverSeq = 0

/** A running `tandem serve` process with JSON logs. */
export class TandemServer {
  constructor ({ dataDir, bin = TANDEM_BIN, env = {}, extraArgs = [], label, listen = '127.0.0.1:0' }) {
    this.dataDir = dataDir
    this.listen = listen
    this.bin = bin
    this.env = env
    this.extraArgs = extraArgs
    this.label = label ?? `server#${++serverSeq}`
    this.stdoutLines = []
    this.stderrLines = []
    /** @type {any[]} parsed JSON log records from stdout */
    this.records = []
    this.child = null
    this.addr = null
    this.port = null
    this.exit = null
    this.exitPromise = null
    this.stopRequested = false
    this.stopResult = null
  }

  /** `ws://HOST:PORT/ws`: the Hocuspocus URL, and the y-websocket serverUrl (it appends `/room`). */
  get wsUrl () { return `ws://${this.addr}/ws` }
  get httpUrl () { return `http://${this.addr}` }
  get running () { return this.child !== null && this.exit === null }

  async start ({ timeout = START_TIMEOUT_MS } = {}) {
    if (!existsSync(this.bin)) throw new Error(`tandem binary not found at ${this.bin} (set TANDEM_BIN)`)
    const args = ['serve', '--addr', this.listen, '--data-dir', this.dataDir, '--log-format', 'json', ...this.extraArgs]
    const child = spawn(this.bin, args, {
      env: { ...process.env, RUST_LOG: process.env.TANDEM_HOCUSPOCUS_RUST_LOG || 'info', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
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
      try {
        const rec = JSON.parse(line)
        this.records.push(rec)
        const fields = rec.fields ?? rec
        if (fields.message === 'listening' && typeof fields.addr === 'string' && this.addr === null) {
          this.addr = fields.addr
          this.port = Number(fields.addr.slice(fields.addr.lastIndexOf(':') + 1))
        }
      } catch {}
    })
    split(child.stderr, (line) => { this.stderrLines.push(line) })
    try {
      await waitFor(() => {
        if (spawnError) throw new Error(`spawn failed: ${spawnError.message}`)
        if (this.exit) throw new Error(`server exited before listening: ${JSON.stringify(this.exit)}`)
        return this.addr !== null
      }, { timeout, interval: 10, what: `${this.label} to log {"message":"listening","addr":...}` })
    } catch (err) {
      if (this.running) child.kill('SIGKILL')
      err.message += `\n${this.diagnostics()}`
      throw err
    }
    return this
  }

  /** SIGTERM; the server must exit with code 0 within `timeout` ms. */
  async stop ({ timeout = STOP_TIMEOUT_MS } = {}) {
    if (!this.child) throw new Error(`${this.label} was never started`)
    if (this.exit) throw new Error(`${this.label} had already exited before SIGTERM: ${JSON.stringify(this.exit)}\n${this.diagnostics()}`)
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

  /** SIGKILL (a crash: nothing is flushed on the way out). */
  async crash () {
    this.stopRequested = true
    this.child.kill('SIGKILL')
    await this.exitPromise
  }

  async kill () {
    if (this.running) {
      this.child.kill('SIGKILL')
      await this.exitPromise
    }
  }

  diagnostics ({ maxLines = 200 } = {}) {
    const tail = (lines) => lines.length > maxLines
      ? [`... (${lines.length - maxLines} earlier lines omitted)`, ...lines.slice(-maxLines)]
      : lines
    return [
      `----- ${this.label}: ${this.bin} (data dir ${this.dataDir}, addr ${this.addr}, exit ${JSON.stringify(this.exit)}) -----`,
      '--- stdout ---', ...tail(this.stdoutLines),
      '--- stderr ---', ...tail(this.stderrLines),
      `----- end ${this.label} -----`
    ].join('\n')
  }
}
