// Late joiners: a client that connects after the edits gets the whole document in the sync
// handshake: its content is checked right at its `synced` event, without waiting any further.

import assert from 'node:assert/strict'

import { concurrentEditing } from './lib/edits.mjs'
import { itest, waitFor } from './lib/harness.mjs'
import { STACKS, VERSIONS } from './lib/stack.mjs'

for (const v of VERSIONS) {
  itest(`${v}: a fresh client gets the full state at its synced event`, async (s) => {
    const server = await s.server()
    const a = await s.syncedClient(STACKS.v3, server, 'late')
    const b = await s.syncedClient(STACKS.v1, server, 'late')
    const expected = await concurrentEditing([a, b])

    // While A and B are still connected.
    const c = s.client(STACKS[v], server, 'late')
    await c.synced()
    assert.deepEqual(c.snapshot(), expected)

    // After every earlier client has left.
    a.destroy()
    b.destroy()
    c.destroy()
    const d = s.client(STACKS[v], server, 'late')
    await d.synced()
    assert.deepEqual(d.snapshot(), expected)
  })
}

itest('a late joiner after the document was unloaded from memory gets the full state', async (s) => {
  // Relies on the server's debug log line "document unloaded" to know the unload happened.
  const server = await s.server({
    env: { RUST_LOG: 'info,tandem_core=debug' },
    extraArgs: ['--unload-delay', '50ms']
  })
  const a = await s.syncedClient(STACKS.v3, server, 'unload/me')
  const b = await s.syncedClient(STACKS.v2, server, 'unload/me')
  const expected = await concurrentEditing([a, b])
  const unloadsBefore = server.records.filter((r) => r.fields?.message === 'document unloaded').length
  a.destroy()
  b.destroy()
  await waitFor(() => server.records.filter((r) => r.fields?.message === 'document unloaded').length > unloadsBefore, {
    what: 'the server to log "document unloaded" after the last peer left (--unload-delay 50ms)'
  })
  const c = s.client(STACKS.v1, server, 'unload/me')
  await c.synced()
  assert.deepEqual(c.snapshot(), expected)
})

itest('a late joiner gets a document built from many small updates', async (s) => {
  const server = await s.server({ extraArgs: ['--compact-log-entries', '50'] })
  const a = await s.syncedClient(STACKS.v3, server, 'many')
  const observer = await s.syncedClient(STACKS.v3, server, 'many')
  for (let i = 0; i < 400; i++) {
    a.text.insert(i % (a.text.length + 1), String.fromCharCode(65 + (i % 26)))
    if (i % 3 === 0) a.array.push([i])
    if (i % 7 === 0) a.map.set(`k${i % 10}`, i)
    if (i % 11 === 0 && a.text.length > 5) a.text.delete(2, 2)
  }
  await waitFor(() => observer.text.toString() === a.text.toString() && observer.array.length === a.array.length, {
    what: '400 updates to reach the observer',
    detail: () => ({ a: a.text.length, observer: observer.text.length })
  })
  const expected = a.snapshot()
  assert.deepEqual(observer.snapshot(), expected)
  const c = s.client(STACKS.v2, server, 'many')
  await c.synced()
  assert.deepEqual(c.snapshot(), expected)
})
