// Presence between a Hocuspocus provider and a y-websocket client: each sees the other's
// awareness state, and a provider that closes its document (CLOSE on a shared socket) or goes
// away disappears from the others' awareness.

import assert from 'node:assert/strict'
import { STACKS, itest, waitFor } from './lib/harness.mjs'

for (const stack of STACKS) {
  itest(`${stack.major} (${stack.version}): awareness flows both ways and a closed provider's state is removed`, async (s) => {
    const server = await s.server()
    const name = `presence-${stack.major}`
    const socket = s.socket(stack, server)
    const hp = s.hp(stack, null, name, { socket })
    const keep = s.hp(stack, null, `${name}-other`, { socket })
    const yws = s.yws(server, name)
    await Promise.all([hp.settled(), keep.settled(), yws.synced()])

    hp.provider.setAwarenessField('user', { name: 'Hocus', color: '#00ff00' })
    yws.provider.awareness.setLocalStateField('user', { name: 'Y', color: '#0000ff' })
    await waitFor(() => yws.provider.awareness.getStates().get(hp.doc.clientID)?.user?.name === 'Hocus', { what: 'the provider\'s presence at the y-websocket client' })
    await waitFor(() => hp.provider.awareness.getStates().get(yws.doc.clientID)?.user?.name === 'Y', { what: 'the y-websocket presence at the provider' })

    // Detach (CLOSE): the server removes the provider's state and tells the others.
    hp.provider.detach()
    await waitFor(() => !yws.provider.awareness.getStates().has(hp.doc.clientID), { what: 'the detached provider\'s presence to go' })
    // The socket and its other document are unaffected.
    keep.text.insert(0, 'still connected')
    await keep.settled()
    assert.equal(socket.webSocket.readyState, 1)
  })
}
