// The binary answers --version and /healthz, and the client stack is what the other tests assume:
// y-websocket 1.x, 2.x and 3.x side by side, all on one yjs / y-protocols / lib0.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import test from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { itest } from './lib/harness.mjs'
import { TANDEM_BIN, binCommand } from './lib/server.mjs'

const run = promisify(execFile)
const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

test('tandem --version prints the version', async () => {
  const { stdout } = await run(...binCommand(TANDEM_BIN, ['--version']), { timeout: 10_000 })
  assert.match(stdout.trim(), /^tandem \d+\.\d+\.\d+\S*$/)
})

itest('GET /healthz answers 200', async (s) => {
  const server = await s.server()
  const res = await fetch(`${server.httpUrl}/healthz`, { signal: AbortSignal.timeout(5_000) })
  assert.equal(res.status, 200)
  await res.arrayBuffer()
})

test('y-websocket 1.x, 2.x and 3.x are installed side by side', () => {
  for (const major of [1, 2, 3]) {
    const pkg = JSON.parse(readFileSync(path.join(here, 'node_modules', `y-websocket-v${major}`, 'package.json'), 'utf8'))
    assert.equal(pkg.name, 'y-websocket')
    assert.equal(Number(pkg.version.split('.')[0]), major, `y-websocket-v${major} is ${pkg.version}`)
  }
})

test('all three y-websocket versions resolve the same yjs, y-protocols and lib0', () => {
  for (const dep of ['yjs', 'y-protocols/sync', 'lib0/encoding']) {
    const top = require.resolve(dep)
    for (const major of [1, 2, 3]) {
      const fromPkg = createRequire(path.join(here, 'node_modules', `y-websocket-v${major}`, 'package.json')).resolve(dep)
      assert.equal(fromPkg, top, `${dep} from y-websocket-v${major}`)
    }
  }
  // ESM entries: src/y-websocket.js for all three (see lib/stack.mjs).
  for (const major of [1, 2, 3]) {
    assert.equal(fileURLToPath(import.meta.resolve(`y-websocket-v${major}`)),
      path.join(here, 'node_modules', `y-websocket-v${major}`, 'src', 'y-websocket.js'))
  }
})

// yjs prints "Yjs was already imported" when a second copy is loaded into one process.
for (const [what, code] of [
  ['the ESM stack (lib/stack.mjs)', "await import('./lib/stack.mjs')"],
  ['the CommonJS stack (yjs + y-websocket 1.x dist)', "const { createRequire } = await import('node:module'); const r = createRequire(process.cwd() + '/x.js'); r('yjs'); r('y-websocket-v1')"]
]) {
  test(`${what} loads a single yjs instance`, async () => {
    const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', `${code}; console.log('loaded')`], { cwd: here, timeout: 30_000 })
    assert.equal(stdout.trim(), 'loaded')
    assert.doesNotMatch(stderr, /already imported/i)
  })
}
