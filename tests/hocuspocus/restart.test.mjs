// A provider reconnects after the server restarts (SIGTERM, exit 0, then a new server on the
// same data dir and port), re-authenticates and merges the edits made on both sides while the
// server was down. And `unsyncedChanges` reaching 0 means durable: a change acknowledged before
// the server is killed (SIGKILL, no shutdown) is there after it starts again.

import assert from 'node:assert/strict'
import { STACKS, itest, waitConverged, waitFor } from './lib/harness.mjs'

for (const stack of STACKS) {
  const tag = `${stack.major} (${stack.version})`

  itest(`${tag}: reconnects after a server restart and merges edits made while the server was down`, async (s) => {
    const server = await s.server({ auth: true })
    const name = `restart/${stack.major}`
    const token = await s.token(server, { docs: ['restart/*'], rights: 'write' })
    const hp = s.hp(stack, server, name, { token })
    const yws = s.yws(server, name, { params: { token } })
    await Promise.all([hp.settled(), yws.synced()])
    hp.text.insert(0, 'before. ')
    yws.map.set('before', true)
    await waitConverged([hp, yws])
    await hp.settled()

    await server.stop()
    s.t.diagnostic(`server stopped with exit code 0 in ${server.stopResult.ms} ms`)
    await waitFor(() => hp.socket.status === 'disconnected' && !yws.provider.wsconnected, {
      what: 'both clients to notice the server is gone', detail: () => hp.describe()
    })
    assert.equal(hp.provider.synced, false, 'a provider is not synced while disconnected')

    // Offline edits on both sides, concurrent with each other.
    hp.text.insert(hp.text.length, 'offline provider. ')
    hp.map.set('offline-hp', 1)
    yws.text.insert(0, 'offline y-websocket. ')
    yws.map.set('offline-yws', 2)
    assert.ok(hp.provider.unsyncedChanges > 0, 'offline edits are unsynced')

    const again = await s.startAgain(server)
    assert.equal(again.addr, server.addr, 'same address')
    await waitFor(() => hp.authenticated.length === 2, { timeout: 15_000, what: 'the provider to authenticate again', detail: () => hp.describe() })
    await waitConverged([hp, yws], { timeout: 15_000 })
    await hp.settled({ what: 'offline edits durable after the restart' })
    const text = hp.text.toString()
    for (const part of ['before. ', 'offline provider. ', 'offline y-websocket. ']) assert.ok(text.includes(part), `${JSON.stringify(part)} in ${JSON.stringify(text)}`)
    assert.deepEqual(hp.map.toJSON(), { before: true, 'offline-hp': 1, 'offline-yws': 2 })
    await s.serverMatches(again, name, hp, { token })

    // And it keeps working.
    hp.text.insert(0, '> ')
    await waitConverged([hp, yws])
    await hp.settled()
  })

  itest(`${tag}: unsyncedChanges 0 means durable: an acknowledged edit survives SIGKILL`, async (s) => {
    const server = await s.server()
    const name = `durable/${stack.major}`
    const hp = s.hp(stack, server, name)
    await hp.settled()
    for (let i = 0; i < 50; i++) hp.map.set(`k${i}`, i)
    hp.text.insert(0, 'acknowledged')
    await hp.settled({ what: 'every edit acknowledged' })
    const expected = hp.snapshot()
    hp.destroy()
    await server.crash()

    const again = await s.startAgain(server, { samePort: false })
    const reader = s.yws(again, name)
    await reader.synced()
    assert.deepEqual(reader.snapshot(), expected)
  })
}
