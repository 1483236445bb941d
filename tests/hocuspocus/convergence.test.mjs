// A Hocuspocus provider (v4 and v3) and a y-websocket 3.x client edit the same document at the
// same time, on Y.Text and Y.Map; all replicas, and the server's stored document, converge.
// `synced` becomes true and `unsyncedChanges` reaches 0 once every edit is durable.

import assert from 'node:assert/strict'
import { STACKS, itest, waitConverged, waitFor } from './lib/harness.mjs'

for (const stack of STACKS) {
  itest(`${stack.major} (${stack.version}): provider and y-websocket converge on Y.Text and Y.Map with concurrent edits`, async (s) => {
    const server = await s.server()
    const name = `notes/${stack.major}/plan`
    const hp = s.hp(stack, server, name)
    const yws = s.yws(server, name)

    assert.equal(await hp.authenticatedScope(), 'read-write')
    await hp.settled({ what: 'initial sync: synced and unsyncedChanges 0' })
    await yws.synced()

    // The first handshake: Authenticated, then sync; the provider's first SyncStatus(1) acks
    // its SyncStep2 and takes unsyncedChanges from 1 (set by startSync) to 0.
    const kinds = hp.frames.map((f) => f.kind)
    assert.equal(kinds[0], 'authenticated', `first frame: ${kinds}`)
    assert.ok(kinds.includes('syncStep2'), `a SyncStep2 reached the provider: ${kinds}`)
    assert.ok(hp.frames.every((f) => f.address === name), 'every frame is addressed to the document')

    // Concurrent edits, without waiting for each other.
    let unsyncedPeak = 0
    hp.provider.on('unsyncedChanges', ({ number }) => { unsyncedPeak = Math.max(unsyncedPeak, number) })
    for (let i = 0; i < 20; i++) {
      hp.text.insert(0, ` h${i} `)
      hp.map.set(`hp-${i}`, { i, from: 'hocuspocus' })
      yws.text.insert(yws.text.length, ` y${i} `)
      yws.map.set(`y-${i}`, i)
      if (i % 5 === 0) {
        hp.map.set('shared', `hp-${i}`)
        yws.map.set('shared', `yws-${i}`)
      }
    }
    hp.doc.transact(() => {
      hp.text.delete(0, 3)
      hp.text.format(0, 3, { bold: true })
    })
    assert.ok(unsyncedPeak >= 20, `unsyncedChanges counted the edits (peak ${unsyncedPeak})`)

    const converged = await waitConverged([hp, yws])
    await hp.settled({ what: 'every edit acknowledged (unsyncedChanges 0)' })
    assert.equal(Object.keys(converged.map).length, 41)
    // Every word of both writers is there (the provider deleted the " h1" of its own " h19 ";
    // the order of the two concurrent runs depends on the client ids).
    const words = yws.text.toString().split(' ').filter(Boolean).sort()
    const want = ['9', ...Array.from({ length: 19 }, (_, i) => `h${i}`), ...Array.from({ length: 20 }, (_, i) => `y${i}`)].sort()
    assert.deepEqual(words, want)
    const bold = yws.text.toDelta().filter((d) => d.attributes?.bold)
    assert.deepEqual(bold, [{ insert: '9  ', attributes: { bold: true } }], 'the formatting reached the y-websocket client')

    // The server's document is the same.
    await s.serverMatches(server, name, hp)

    // Every SyncStatus the provider got said "applied": it never had a change refused.
    const statuses = hp.framesOf('syncStatus')
    assert.ok(statuses.length >= 21, `one SyncStatus per change at least (${statuses.length})`)
    assert.ok(statuses.every((f) => f.applied), 'every SyncStatus is SyncStatus(1)')
  })

  itest(`${stack.major} (${stack.version}): a provider joining a document with content receives it and its edits reach a y-websocket client`, async (s) => {
    const server = await s.server()
    const name = `late-${stack.major}`
    const yws = s.yws(server, name)
    await yws.synced()
    yws.text.insert(0, 'written before the provider came')
    yws.map.set('k', 'v')
    await waitFor(async () => (await s.serverDoc(server, name)).doc.getText('text').length > 0, { what: 'server to have the y-websocket edit' })

    const hp = s.hp(stack, server, name)
    await hp.settled()
    assert.equal(hp.text.toString(), 'written before the provider came')
    assert.deepEqual(hp.map.toJSON(), { k: 'v' })

    hp.text.insert(0, '>> ')
    await waitConverged([hp, yws])
    await hp.settled()
    assert.equal(yws.text.toString(), '>> written before the provider came')
  })
}

itest('v4 and v3 providers and a y-websocket client edit one document together', async (s) => {
  const server = await s.server()
  const [v4, v3] = STACKS
  const a = s.hp(v4, server, 'mixed')
  const b = s.hp(v3, server, 'mixed')
  const c = s.yws(server, 'mixed')
  await Promise.all([a.settled(), b.settled(), c.synced()])
  for (let i = 0; i < 10; i++) {
    a.text.insert(0, 'a')
    b.text.insert(0, 'b')
    c.text.insert(0, 'c')
    a.map.set('who', 'a'); b.map.set('who', 'b'); c.map.set('who', 'c')
  }
  const snap = await waitConverged([a, b, c])
  assert.equal(snap.text.map((d) => d.insert).join('').length, 30)
  await Promise.all([a.settled(), b.settled()])
})

// Known divergence (README.md, "Server bugs found"): forceSync() / forceSyncInterval sets
// unsyncedChanges to 1 and sends SyncStep1 on the open session. The reference server answers
// every client SyncStep1 with its own SyncStep1 and then SyncStep2 (reference/probe.mjs case 2;
// server-v4/sync-step1-*.hex), so the provider answers with a SyncStep2, which is acknowledged
// with SyncStatus(1) and brings the counter back to 0. Tandem answers with SyncStep2 only, so
// the counter stays at 1 (hasUnsyncedChanges true) for as long as the session lasts.
for (const stack of STACKS) {
  itest(`${stack.major} (${stack.version}): after forceSync() unsyncedChanges returns to 0`, async (s) => {
    const server = await s.server()
    const hp = s.hp(stack, server, `force-${stack.major}`)
    await hp.settled()
    hp.text.insert(0, 'x')
    await hp.settled()
    hp.provider.forceSync()
    assert.equal(hp.provider.unsyncedChanges, 1)
    await hp.settled({ timeout: 3000, what: 'unsyncedChanges back to 0 after forceSync()' })
  })
}
