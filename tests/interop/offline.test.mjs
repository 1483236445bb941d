// Offline edits: a client edits before it ever connects (and again while disconnected), then
// connects; its edits and the online clients' edits all end up in every replica.

import assert from 'node:assert/strict'

import { itest, waitConverged } from './lib/harness.mjs'
import { STACKS, VERSIONS } from './lib/stack.mjs'

for (const v of VERSIONS) {
  itest(`${v}: edits made before connecting and while disconnected are merged`, async (s) => {
    const server = await s.server()
    const stack = STACKS[v]
    const a = await s.syncedClient(stack, server, 'offline')
    const observer = await s.syncedClient(stack, server, 'offline')

    // A edits online; the observer seeing them proves the server has them.
    a.text.insert(0, 'online-A ')
    a.map.set('a', 1)
    a.map.set('conflict', 'A')
    a.array.push(['a'])
    await waitConverged([a, observer], { what: "A's online edits to reach the observer" })

    // B is created with connect: false and edits offline.
    const b = s.client(stack, server, 'offline', { connect: false })
    b.text.insert(0, 'offline-B ')
    b.map.set('b', 2)
    b.map.set('conflict', 'B')
    b.array.push(['b'])
    const nested = new b.Y.Map()
    b.map.set('nested', nested)
    nested.set('deep', 'offline')
    assert.equal(b.provider.wsconnected, false)
    assert.equal(b.provider.ws, null, 'B never opened a socket')
    assert.equal(b.text.toString(), 'offline-B ', "B has not seen A's edits")

    b.provider.connect()
    await b.synced()
    const snap = await waitConverged([a, b, observer], { what: "A's and B's offline edits in all replicas" })
    assert.ok(snap.doc.text.includes('online-A') && snap.doc.text.includes('offline-B'), snap.doc.text)
    assert.equal(snap.map.a, 1)
    assert.equal(snap.map.b, 2)
    assert.deepEqual(snap.map.nested, { deep: 'offline' })
    assert.ok(['A', 'B'].includes(snap.map.conflict))
    assert.deepEqual([...snap.array].sort(), ['a', 'b'])

    // Disconnect B, edit on both sides, reconnect.
    await b.disconnect()
    b.text.insert(b.text.length, ' B-while-disconnected')
    b.array.delete(0, 1)
    b.map.set('b', 'again')
    a.text.insert(0, 'A-meanwhile ')
    a.array.push(['a2'])
    await waitConverged([a, observer], { what: "A's edits made while B is away to reach the observer" })
    assert.ok(!b.text.toString().includes('A-meanwhile'), 'B is really disconnected')

    b.provider.connect()
    await b.synced()
    const snap2 = await waitConverged([a, b, observer], { what: 'convergence after B reconnects' })
    assert.ok(snap2.doc.text.includes('A-meanwhile') && snap2.doc.text.includes('B-while-disconnected'), snap2.doc.text)
    assert.equal(snap2.map.b, 'again')
    assert.ok(snap2.array.includes('a2'))
    assert.equal(snap2.array.length, 2)
  })
}
