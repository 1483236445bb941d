// Room (document) names: the y-websocket room name is the URL path after /ws/, which the server
// percent-decodes. Names with slashes, spaces, unicode and percent-escapes work; different names
// are different documents.

import assert from 'node:assert/strict'

import { round0, check0 } from './lib/edits.mjs'
import { itest, waitConverged } from './lib/harness.mjs'
import { STACKS } from './lib/stack.mjs'

const NAMES = [
  'notes/2024/plan',
  'é 😀', // the ws client sends it as /ws/%C3%A9%20%F0%9F%98%80
  'a%2Fb', // a percent-encoded slash, sent as is
  'bytes%FF%FE' // decodes to bytes that are not UTF-8
]

for (const name of NAMES) {
  itest(`room ${JSON.stringify(name)}: v1 and v3 clients converge`, async (s) => {
    const server = await s.server()
    const a = await s.syncedClient(STACKS.v1, server, name)
    const b = await s.syncedClient(STACKS.v3, server, name)
    round0([a, b])
    check0(await waitConverged([a, b]), 2)
    const late = await s.syncedClient(STACKS.v2, server, name)
    assert.deepEqual(late.snapshot(), a.snapshot())
  })
}

// The server percent-decodes the path, so an escaped and an unescaped spelling of the same bytes
// name the same document.
for (const [raw, escaped] of [['é 😀', '%C3%A9%20%F0%9F%98%80'], ['a/b', 'a%2Fb'], ['x y', 'x%20y']]) {
  itest(`room names ${JSON.stringify(raw)} and ${JSON.stringify(escaped)} are the same document`, async (s) => {
    const server = await s.server()
    const a = await s.syncedClient(STACKS.v3, server, raw)
    const b = await s.syncedClient(STACKS.v3, server, escaped)
    a.text.insert(0, 'via raw ')
    b.text.insert(0, 'via escaped ')
    const snap = await waitConverged([a, b])
    assert.ok(snap.doc.text.includes('via raw') && snap.doc.text.includes('via escaped'), snap.doc.text)
  })
}

itest('different room names are isolated from each other', async (s) => {
  const server = await s.server()
  const rooms = ['a', 'a/b', 'a/b/c', 'a/', 'A', 'notes/2024/plan', 'notes/2024/plan2', 'é 😀', 'e 😀']
  const writers = {}
  const observers = {}
  for (const room of rooms) {
    writers[room] = await s.syncedClient(STACKS.v3, server, room)
    observers[room] = await s.syncedClient(STACKS.v1, server, room)
  }
  // Each writer edits its own room; its observer seeing the edit proves the server applied it.
  for (const room of rooms) {
    const w = writers[room]
    w.text.insert(0, `text of ${room}`)
    w.map.set('room', room)
    w.array.push([room])
  }
  for (const room of rooms) {
    await waitConverged([writers[room], observers[room]], { what: `room ${JSON.stringify(room)} to converge` })
  }
  // Every room holds exactly its own writer's edit, never another room's: the observers (connected
  // all along) and fresh clients (state from the server's handshake) agree.
  for (const room of rooms) {
    const fresh = await s.syncedClient(STACKS.v2, server, room)
    for (const c of [observers[room], fresh]) {
      assert.equal(c.text.toString(), `text of ${room}`, `${c.label} in ${JSON.stringify(room)}`)
      assert.deepEqual(c.map.toJSON(), { room })
      assert.deepEqual(c.array.toJSON(), [room])
      assert.deepEqual(new Set(c.knownClients()), new Set([writers[room].clientID]), `only ${JSON.stringify(room)}'s writer is known`)
    }
  }
})

itest('URL query parameters (y-websocket `params`) are not part of the room name', async (s) => {
  const server = await s.server()
  const a = s.client(STACKS.v3, server, 'with/params', { params: { token: 'secret', x: 'a b' } })
  const b = s.client(STACKS.v1, server, 'with/params')
  await a.synced()
  await b.synced()
  assert.match(a.provider.url, /\/ws\/with\/params\?token=secret&x=a%20b$/)
  a.text.insert(0, 'A ')
  b.text.insert(0, 'B ')
  const snap = await waitConverged([a, b])
  assert.equal(snap.doc.text.length, 4)
})
