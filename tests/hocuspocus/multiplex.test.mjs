// Several documents on one HocuspocusProviderWebsocket: each provider authenticates and syncs its
// own document over the shared socket, edits stay in their document, and closing one provider
// (destroy or detach: a CLOSE frame) ends only that document's session while the socket and the
// other document keep working.

import assert from 'node:assert/strict'
import { STACKS, decodeServerFrame, itest, waitConverged, waitFor } from './lib/harness.mjs'

/** Records every frame the shared socket receives, decoded, whichever provider it is for. */
function tap (socket) {
  const frames = []
  socket.on('message', (event) => { frames.push(decodeServerFrame(event.data)) })
  return frames
}

for (const stack of STACKS) {
  for (const how of ['destroy', 'detach']) {
    itest(`${stack.major} (${stack.version}): two documents on one socket; ${how}() of one leaves the other working`, async (s) => {
      const server = await s.server()
      const socket = s.socket(stack, server)
      const frames = tap(socket)
      const [nameA, nameB] = [`multi/${stack.major}/${how}/a`, `multi/${stack.major}/${how}/b`]
      const a = s.hp(stack, null, nameA, { socket })
      const b = s.hp(stack, null, nameB, { socket })
      const ya = s.yws(server, nameA)
      const yb = s.yws(server, nameB)
      assert.equal(await a.authenticatedScope(), 'read-write')
      assert.equal(await b.authenticatedScope(), 'read-write')
      await Promise.all([a.settled(), b.settled(), ya.synced(), yb.synced()])
      const webSocket = socket.webSocket
      assert.ok(webSocket, 'the shared socket is open')

      // Frames for both documents arrive on the one socket, each routed by its address.
      const addresses = new Set(frames.map((f) => f.address))
      assert.deepEqual([...addresses].sort(), [nameA, nameB].sort())
      assert.ok(a.frames.every((f) => f.address === nameA) && b.frames.every((f) => f.address === nameB))

      a.text.insert(0, 'only in A')
      b.map.set('doc', 'B')
      ya.map.set('from-ya', 1)
      yb.text.insert(0, 'only in B')
      await waitConverged([a, ya])
      await waitConverged([b, yb])
      await Promise.all([a.settled(), b.settled()])
      assert.equal(a.text.toString(), 'only in A')
      assert.deepEqual(a.map.toJSON(), { 'from-ya': 1 })
      assert.equal(b.text.toString(), 'only in B')
      assert.deepEqual(b.map.toJSON(), { doc: 'B' })
      assert.equal((await s.docInfo(server, nameA)).peers, 2)
      assert.equal((await s.docInfo(server, nameB)).peers, 2)

      // Close A: the server ends that session (answering CLOSE "provider_initiated") and nothing
      // else; the socket stays open.
      a.provider[how]()
      await waitFor(() => frames.some((f) => f.address === nameA && f.kind === 'close'), {
        what: `CLOSE for ${nameA}`, detail: () => frames.map((f) => [f.address, f.kind])
      })
      const close = frames.find((f) => f.address === nameA && f.kind === 'close')
      assert.equal(close.reason, 'provider_initiated')
      await waitFor(async () => (await s.docInfo(server, nameA)).peers === 1, { what: `${nameA} to have one peer left` })
      assert.equal((await s.docInfo(server, nameB)).peers, 2)

      // B goes on, on the same socket.
      b.text.insert(0, 'still here: ')
      yb.map.set('after-close', true)
      await waitConverged([b, yb])
      await b.settled()
      assert.equal(yb.text.toString(), 'still here: only in B')
      assert.equal(socket.webSocket, webSocket, 'the same WebSocket carried B throughout')
      assert.equal(webSocket.readyState, 1, 'the socket is still OPEN')

      // A no longer hears its document.
      const framesForA = frames.filter((f) => f.address === nameA).length
      ya.text.insert(0, 'A moved on: ')
      await waitFor(async () => (await s.serverDoc(server, nameA)).doc.getText('text').toString().startsWith('A moved on: '), { what: 'the server to have ya\'s edit' })
      // A round trip on B after that: anything the server sent for A would have arrived by now.
      b.map.set('marker', 1)
      await waitConverged([b, yb])
      await b.settled()
      assert.equal(frames.filter((f) => f.address === nameA).length, framesForA, `no frame for the closed ${nameA} after CLOSE`)
      assert.equal(a.text.toString(), 'only in A')

      if (how === 'detach') {
        // Attaching again opens a new session on the same socket and catches up.
        a.provider.attach()
        await waitFor(() => a.authenticated.length === 2, { what: 'A to authenticate again', detail: () => a.describe() })
        await waitConverged([a, ya])
        await a.settled()
        assert.equal(a.text.toString(), 'A moved on: only in A')
        assert.equal(socket.webSocket, webSocket)
        assert.equal((await s.docInfo(server, nameA)).peers, 2)
      }
    })
  }

  itest(`${stack.major} (${stack.version}): a third document attached to an open socket; five documents at once`, async (s) => {
    const server = await s.server()
    const socket = s.socket(stack, server)
    const providers = []
    for (let i = 0; i < 2; i++) providers.push(s.hp(stack, null, `five-${stack.major}-${i}`, { socket }))
    await Promise.all(providers.map((p) => p.settled()))
    const webSocket = socket.webSocket
    for (let i = 2; i < 5; i++) providers.push(s.hp(stack, null, `five-${stack.major}-${i}`, { socket }))
    await Promise.all(providers.map((p) => p.settled()))
    providers.forEach((p, i) => p.text.insert(0, `doc ${i}`))
    const readers = providers.map((p) => s.yws(server, p.name))
    for (const [i, r] of readers.entries()) await waitConverged([providers[i], r])
    await Promise.all(providers.map((p) => p.settled()))
    readers.forEach((r, i) => assert.equal(r.text.toString(), `doc ${i}`))
    assert.equal(socket.webSocket, webSocket, 'one socket throughout')
  })
}

itest(`v4 (${STACKS[0].version}): sessionAwareness — two providers for the same document on one socket (address name\\0session)`, async (s) => {
  const [V4] = STACKS
  const server = await s.server()
  const socket = s.socket(V4, server)
  const one = s.hp(V4, null, 'same', { socket, options: { sessionAwareness: true } })
  const two = s.hp(V4, null, 'same', { socket, options: { sessionAwareness: true } })
  const yws = s.yws(server, 'same')
  await Promise.all([one.settled(), two.settled(), yws.synced()])
  assert.ok(one.frames.every((f) => f.address === `same\0${one.provider.sessionId}`), 'replies use the session address')
  assert.ok(two.frames.every((f) => f.address === `same\0${two.provider.sessionId}`))
  one.text.insert(0, 'one ')
  two.map.set('two', 2)
  yws.text.insert(0, 'y ')
  await waitConverged([one, two, yws])
  await Promise.all([one.settled(), two.settled()])
  assert.equal((await s.docInfo(server, 'same')).peers, 3)
  one.provider.destroy()
  await waitFor(async () => (await s.docInfo(server, 'same')).peers === 2, { what: 'one session to end' })
  two.text.insert(0, 'two ')
  await waitConverged([two, yws])
  await two.settled()
})
