// Awareness (presence) through the server: states propagate, late joiners get the current states,
// and a client's state disappears for the others when it leaves.
//
// Deadlines here are 5 s on purpose: y-websocket clients renew their own awareness every 15 s and
// drop remote states not renewed for 30 s, so passing within 5 s shows the server did the work
// (forwarding, replaying current states to a new peer, announcing a departed peer's removal).

import assert from 'node:assert/strict'
import { isDeepStrictEqual } from 'node:util'

import { itest, waitFor } from './lib/harness.mjs'
import { STACKS, VERSIONS } from './lib/stack.mjs'

const AWARENESS_TIMEOUT_MS = 5_000

const stateOf = (observer, subject) => observer.awareness.getStates().get(subject.clientID)

function waitState (observer, subject, expected, what) {
  return waitFor(() => isDeepStrictEqual(stateOf(observer, subject) ?? null, expected), {
    timeout: AWARENESS_TIMEOUT_MS,
    what: `${observer.label} to see ${subject.label}'s awareness state ${JSON.stringify(expected)} (${what})`,
    detail: () => Object.fromEntries([...observer.awareness.getStates()].map(([k, v]) => [k, v]))
  })
}

for (const v of VERSIONS) {
  itest(`${v}: awareness state propagates and is removed when the provider is destroyed`, async (s) => {
    const server = await s.server()
    const a = await s.syncedClient(STACKS[v], server, 'presence')
    const b = await s.syncedClient(STACKS[v], server, 'presence')

    a.awareness.setLocalState({ user: { name: 'A' } })
    await waitState(b, a, { user: { name: 'A' } }, 'set')

    a.awareness.setLocalStateField('cursor', { index: 3 })
    await waitState(b, a, { user: { name: 'A' }, cursor: { index: 3 } }, 'update')

    // A client joining later gets A's current state from the server: A sends nothing new.
    const c = await s.syncedClient(STACKS[v], server, 'presence')
    await waitState(c, a, { user: { name: 'A' }, cursor: { index: 3 } }, 'late joiner')

    // Destroying A's provider closes its socket without an awareness message of its own:
    // the server has to tell the others that A is gone.
    a.provider.destroy()
    await waitState(b, a, null, 'A destroyed')
    await waitState(c, a, null, 'A destroyed')
  })
}

itest('mixed versions: an explicit awareness removal (setLocalState(null)) propagates', async (s) => {
  const server = await s.server()
  const a = await s.syncedClient(STACKS.v1, server, 'presence/mixed')
  const b = await s.syncedClient(STACKS.v3, server, 'presence/mixed')
  const c = await s.syncedClient(STACKS.v2, server, 'presence/mixed')
  const names = new Map([[a, 'A'], [b, 'B'], [c, 'C']])
  for (const [client, name] of names) client.awareness.setLocalState({ user: { name } })
  for (const [obs, subj] of [[a, b], [a, c], [b, a], [b, c], [c, a], [c, b]]) {
    await waitState(obs, subj, { user: { name: names.get(subj) } }, 'all three')
  }
  b.awareness.setLocalState(null)
  await waitState(a, b, null, 'B cleared its state')
  await waitState(c, b, null, 'B cleared its state')
  // A and C are unaffected.
  assert.deepEqual(stateOf(c, a), { user: { name: 'A' } })
  assert.deepEqual(stateOf(a, c), { user: { name: 'C' } })
})
