// Two (or three) y-websocket clients, each with its own Y.Doc, edit a Y.Text, a Y.Map and a
// Y.Array concurrently through the server and converge: identical state vectors and content.

import assert from 'node:assert/strict'

import { concurrentEditing } from './lib/edits.mjs'
import { itest } from './lib/harness.mjs'
import { STACKS, VERSIONS } from './lib/stack.mjs'

for (const v of VERSIONS) {
  itest(`${v}: two clients edit text, map and array concurrently and converge`, async (s) => {
    const server = await s.server()
    const a = await s.syncedClient(STACKS[v], server, 'converge')
    const b = await s.syncedClient(STACKS[v], server, 'converge')
    const final = await concurrentEditing([a, b])
    assert.deepEqual(new Set(a.knownClients()), new Set([a.clientID, b.clientID]))
    assert.deepEqual(a.doc.toJSON(), b.doc.toJSON())
    assert.ok(final.text.length > 0)
  })
}

for (const [x, y] of [['v1', 'v3'], ['v1', 'v2'], ['v2', 'v3']]) {
  itest(`mixed versions: a ${x} client and a ${y} client converge`, async (s) => {
    const server = await s.server()
    const a = await s.syncedClient(STACKS[x], server, 'mixed')
    const b = await s.syncedClient(STACKS[y], server, 'mixed')
    await concurrentEditing([a, b])
  })
}

itest('mixed versions: v1, v2 and v3 clients in one room converge', async (s) => {
  const server = await s.server()
  const clients = []
  for (const v of VERSIONS) clients.push(await s.syncedClient(STACKS[v], server, 'all-three'))
  await concurrentEditing(clients)
})
