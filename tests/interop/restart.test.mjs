// Persistence across restarts: SIGTERM must flush every document and exit 0 within 10 s, and a
// new server on the same --data-dir must give back every document exactly (same state vector,
// same content).

import assert from 'node:assert/strict'

import { concurrentEditing } from './lib/edits.mjs'
import { itest, waitConverged, waitFor } from './lib/harness.mjs'
import { STACKS } from './lib/stack.mjs'

const ROOMS = ['restart/one', 'é 😀 restart', 'plain', 'bytes%FF%FE']

itest('every document comes back exactly after SIGTERM and restart (twice)', async (s) => {
  let server = await s.server()
  const expected = {}
  for (const room of ROOMS) {
    const a = await s.syncedClient(STACKS.v3, server, room)
    const b = await s.syncedClient(STACKS.v1, server, room)
    expected[room] = await concurrentEditing([a, b])
    a.destroy()
    b.destroy()
  }

  server = await s.restart(server)
  const restored = {}
  for (const room of ROOMS) {
    restored[room] = await s.syncedClient(STACKS.v2, server, room)
    assert.deepEqual(restored[room].snapshot(), expected[room], `room ${JSON.stringify(room)} after first restart`)
  }

  // Edit a restored document, then restart again: the new edits and the old state both persist.
  const room = ROOMS[0]
  const x = restored[room]
  const y = await s.syncedClient(STACKS.v3, server, room)
  x.text.insert(0, 'after-restart ')
  x.map.set('afterRestart', true)
  y.array.push(['after-restart'])
  expected[room] = await waitConverged([x, y], { what: 'post-restart edits to converge' })
  for (const c of s.clients) c.destroy()

  server = await s.restart(server)
  for (const r of ROOMS) {
    const c = await s.syncedClient(STACKS.v1, server, r)
    assert.deepEqual(c.snapshot(), expected[r], `room ${JSON.stringify(r)} after second restart`)
  }
})

itest('SIGTERM with clients still connected exits 0 and loses nothing', async (s) => {
  let server = await s.server()
  const a = await s.syncedClient(STACKS.v3, server, 'connected/at/shutdown')
  const b = await s.syncedClient(STACKS.v2, server, 'connected/at/shutdown')
  const expected = await concurrentEditing([a, b])
  // Both providers are connected while the server stops (s.restart asserts exit 0 within 10 s).
  assert.ok(a.provider.wsconnected && b.provider.wsconnected)
  server = await s.restart(server)
  await waitFor(() => !a.provider.wsconnected && !b.provider.wsconnected, {
    what: 'the old connections to be closed by the stopped server'
  })
  a.destroy()
  b.destroy()
  const c = await s.syncedClient(STACKS.v1, server, 'connected/at/shutdown')
  assert.deepEqual(c.snapshot(), expected)
})

itest('documents compacted many times come back exactly after restart', async (s) => {
  let server = await s.server({ extraArgs: ['--compact-log-entries', '20', '--compact-log-bytes', '2048'] })
  const a = await s.syncedClient(STACKS.v3, server, 'compacted')
  const b = await s.syncedClient(STACKS.v3, server, 'compacted')
  for (let i = 0; i < 300; i++) {
    const c = i % 2 ? a : b
    c.text.insert((i * 13) % (c.text.length + 1), `${i % 10}`)
    if (i % 5 === 0) c.array.push([{ i, by: c.label }])
    if (i % 9 === 0) c.map.set(`k${i % 4}`, i)
    if (i % 17 === 0 && c.text.length > 10) c.text.delete(3, 4)
    if (i % 50 === 0) await waitConverged([a, b], { what: `convergence at step ${i}` })
  }
  const expected = await waitConverged([a, b], { what: 'convergence after 300 edits' })
  a.destroy()
  b.destroy()
  server = await s.restart(server)
  const c = await s.syncedClient(STACKS.v2, server, 'compacted')
  assert.deepEqual(c.snapshot(), expected)
})

itest('clients edit while the server is down and resync when it is back on the same port', async (s) => {
  let server = await s.server()
  const a = await s.syncedClient(STACKS.v1, server, 'reconnect/me')
  const b = await s.syncedClient(STACKS.v3, server, 'reconnect/me')
  a.awareness.setLocalState({ user: { name: 'A' } })
  a.text.insert(0, 'before ')
  b.map.set('before', true)
  await waitConverged([a, b], { what: 'edits before the restart' })
  await waitFor(() => b.awareness.getStates().get(a.clientID)?.user?.name === 'A', { timeout: 5_000, what: "B to see A's awareness" })

  await server.stop() // asserts exit code 0 within 10 s
  await waitFor(() => !a.provider.wsconnected && !b.provider.wsconnected, { what: 'both clients to notice the server is gone' })
  // Offline on both sides, concurrently.
  a.text.insert(a.text.length, 'A-while-down ')
  a.array.push(['a'])
  b.text.insert(0, 'B-while-down ')
  b.map.set('during', 'B')

  // Same data dir, same port: the providers reconnect with their own backoff (at most 2.5 s).
  server = await s.start({ dataDir: server.dataDir, listen: server.addr, label: 'server#2 (same port)' })
  await a.synced({ timeout: 15_000 })
  await b.synced({ timeout: 15_000 })
  const snap = await waitConverged([a, b], { what: 'convergence after reconnecting' })
  for (const part of ['before', 'A-while-down', 'B-while-down']) assert.ok(snap.doc.text.includes(part), snap.doc.text)
  assert.deepEqual(snap.map, { before: true, during: 'B' })
  assert.deepEqual(snap.array, ['a'])
  // Awareness works again. (A re-sends its state on reconnect with the same clock, which B, having
  // kept A's clock from before, ignores by y-protocols' rules until A's next change or 15 s renewal;
  // so A changes its state here.)
  a.awareness.setLocalStateField('user', { name: 'A again' })
  await waitFor(() => b.awareness.getStates().get(a.clientID)?.user?.name === 'A again', {
    timeout: 5_000, what: "B to see A's awareness change after reconnecting"
  })
  const c = await s.syncedClient(STACKS.v2, server, 'reconnect/me')
  assert.deepEqual(c.snapshot(), snap)
})
