// y-websocket 1.x through its CommonJS build (dist/y-websocket.cjs), as a Node `require` user gets
// it, with yjs's CommonJS build. This process never loads the ESM yjs (lib/stack.mjs is not
// imported here), so there is exactly one yjs instance.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import test from 'node:test'
import { isDeepStrictEqual } from 'node:util'

import { concurrentEditing } from './lib/edits.mjs'
import { itest, waitFor } from './lib/harness.mjs'

const require = createRequire(import.meta.url)
const Y = require('yjs')
const { WebsocketProvider } = require('y-websocket-v1')
const V1_CJS = { Y, Provider: WebsocketProvider, version: 'v1-cjs' }

test('v1 (CommonJS build): resolves to the CJS dist files', () => {
  assert.match(require.resolve('y-websocket-v1'), /y-websocket-v1[/\\]dist[/\\]y-websocket\.cjs$/)
  assert.match(require.resolve('yjs'), /yjs[/\\]dist[/\\]yjs\.cjs$/)
})

itest('v1 (CommonJS build): concurrent edits converge, a late joiner gets the full state', async (s) => {
  const server = await s.server()
  const a = await s.syncedClient(V1_CJS, server, 'cjs/room')
  const b = await s.syncedClient(V1_CJS, server, 'cjs/room')
  const expected = await concurrentEditing([a, b])
  const c = s.client(V1_CJS, server, 'cjs/room')
  await c.synced()
  assert.deepEqual(c.snapshot(), expected)
})

itest('v1 (CommonJS build): awareness propagates and is removed when the provider is destroyed', async (s) => {
  const server = await s.server()
  const a = await s.syncedClient(V1_CJS, server, 'cjs/presence')
  const b = await s.syncedClient(V1_CJS, server, 'cjs/presence')
  a.awareness.setLocalState({ user: { name: 'A' } })
  await waitFor(() => isDeepStrictEqual(b.awareness.getStates().get(a.clientID), { user: { name: 'A' } }), {
    timeout: 5_000, what: "B to see A's awareness state"
  })
  a.provider.destroy()
  await waitFor(() => !b.awareness.getStates().has(a.clientID), {
    timeout: 5_000, what: "B to drop A's awareness state after A's provider was destroyed"
  })
})
