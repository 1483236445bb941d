// Large updates: a multi-megabyte edit (one WebSocket frame, below the default 16 MiB limit) goes
// through, reaches late joiners and survives a restart.

import assert from 'node:assert/strict'

import { itest, waitConverged } from './lib/harness.mjs'
import { STACKS } from './lib/stack.mjs'

itest('a 4 MiB text insert and a 20000-element array push sync, and survive a restart', async (s) => {
  let server = await s.server()
  const a = await s.syncedClient(STACKS.v3, server, 'large')
  const b = await s.syncedClient(STACKS.v1, server, 'large')
  const big = 'lorem ipsum dolor sit amet '.repeat(Math.ceil((4 << 20) / 27)).slice(0, 4 << 20)
  a.text.insert(0, big)
  b.array.push(Array.from({ length: 20_000 }, (_, i) => ({ i, s: `item ${i}` })))
  const expected = await waitConverged([a, b], { timeout: 30_000, what: 'the large edits to converge' })
  assert.equal(expected.doc.text.length, big.length)
  assert.equal(expected.array.length, 20_000)
  a.destroy()
  b.destroy()
  server = await s.restart(server)
  const c = await s.syncedClient(STACKS.v2, server, 'large')
  assert.deepEqual(c.snapshot(), expected)
}, { timeout: 180_000 })
