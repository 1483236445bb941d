// Custom events on the y-websocket socket, with the real y-websocket 1.x, 2.x and 3.x providers:
// a type-5 handler in `provider.messageHandlers` to receive and `provider.ws.send` to send
// (lib/events.mjs), against the real binary.
//
// - two opted-in clients (`?events=1`) exchange events: each gets the other's, in order, with
//   seq / type / data / from / at, and an ack for each of its own, never its own back; a plain
//   client in the same document never receives a type-5 message, not even when it asks for the
//   history or emits one itself, and its document keeps converging;
// - a client that disconnects, misses events and reconnects with `{"since": lastSeen}` gets
//   exactly the missed ones (byte-identical to what a connected client got live), then live ones;
// - with `--event-history 3`, asking from further back gets a gap marker first; history and
//   numbering survive SIGTERM + restart on the same data dir;
// - with tokens: a `read` token's event is answered with a y-protocols permission-denied message
//   and goes nowhere (it takes no sequence number), an `events` token's and a `write` token's are
//   delivered with the token's `sub` as `from`;
// - limits: an event at exactly `--max-event-bytes` passes, one byte more closes that connection
//   with 1008; an event over `--events-per-sec`/`--event-burst` closes with 1008; a malformed event
//   message closes with 1002. The other clients are unaffected, the offender reconnects and its
//   events flow again. The server's WARN line for each of these refusals is declared with
//   `Session.expectWarning` and must appear exactly that often.
//
// "Never received" is proven with barriers: the server handles a document's messages in order in
// one task and queues each peer's frames in order, so once a client has received a message the
// server queued after some events, every frame the server could have queued for that client
// because of those events has been delivered to it already.
//
// The reference server (npm run test:reference) has no custom events: these tests are skipped
// there.

import assert from 'node:assert/strict'

import {
  AUTH_PERMISSION_DENIED, AuthKit, IS_REFERENCE_SERVER, MESSAGE_AUTH, captureConsoleWarn, redact, tapProvider
} from './lib/auth.mjs'
import { EventTap, MESSAGE_EVENT, eventFrame, eventFrameFromJson, eventParams, recordMessageTypes } from './lib/events.mjs'
import { itest, waitConverged, waitFor } from './lib/harness.mjs'
import { STACKS } from './lib/stack.mjs'

const skip = IS_REFERENCE_SERVER && 'the reference server has no custom events'
const etest = (name, fn) => itest(name, fn, { skip })

/** Deadline for an event (or ack, or close) to arrive. */
const EVENT_TIMEOUT_MS = 5_000

/** The keys of a relayed event, in the order the server writes them. */
const EVENT_KEYS = ['seq', 'type', 'data', 'from', 'at']

/** What y-websocket (all majors) console.warns when it receives a permission-denied auth message. */
const PERMISSION_WARNING = /^Permission denied to access /

/** The server's WARN messages for the refusals provoked here. */
const WARN_EVENT_TOO_LARGE = 'closing connection: custom event too large'
const WARN_EVENT_RATE = 'closing connection: custom event rate exceeded'
const WARN_MALFORMED = 'refusing frame'

/** Waits until every tap satisfies its condition. */
function waitTaps (what, check, taps) {
  return waitFor(check, {
    timeout: EVENT_TIMEOUT_MS,
    what,
    detail: () => taps.map((tap) => tap.describe())
  })
}

/** Waits until `server` logged `n` WARN records `message`. */
function waitWarnings (server, message, n) {
  return waitFor(() => server.records.filter((r) => r.level === 'WARN' && r.fields?.message === message).length >= n, {
    timeout: EVENT_TIMEOUT_MS,
    what: `${server.label} to log ${n} WARN ${JSON.stringify(message)}`
  })
}

/** Waits until `client`'s provider is connected and synced again (after the server closed it). */
function waitReconnected (client) {
  return waitFor(() => client.provider.wsconnected && client.provider.synced, {
    timeout: 10_000,
    what: `${client.label} to reconnect and sync`
  })
}

/** Asserts that `event` is a well-formed relayed event with these fields. */
function assertEvent (event, { seq, type, data, from, atLeast, atMost }, what) {
  assert.deepEqual(Object.keys(event), EVENT_KEYS, `${what}: exactly the keys ${EVENT_KEYS}`)
  assert.equal(event.seq, seq, `${what}: seq`)
  assert.equal(event.type, type, `${what}: type`)
  assert.deepEqual(event.data, data, `${what}: data`)
  if (from instanceof RegExp) assert.match(event.from, from, `${what}: from`)
  else assert.equal(event.from, from, `${what}: from`)
  assert.ok(Number.isSafeInteger(event.at), `${what}: at is an integer (unix ms): ${event.at}`)
  if (atLeast !== undefined) assert.ok(event.at >= atLeast && event.at <= atMost, `${what}: at ${event.at} within [${atLeast}, ${atMost}] (this host's clock around the send)`)
}

const strictlyIncreasing = (xs) => xs.every((x, i) => i === 0 || x > xs[i - 1])

// ---- 1. exchange, and a plain client that never hears of it --------------------------------------

for (const [va, vb, vc] of [['v1', 'v1', 'v1'], ['v2', 'v2', 'v2'], ['v3', 'v3', 'v3'], ['v1', 'v3', 'v2']]) {
  etest(`${va} + ${vb}: opted-in clients exchange events in order (seq, from, at, acks, never their own); a plain ${vc} client in the document never receives a type-5 message and keeps converging`, async (s, t) => {
    const server = await s.server()
    const room = 'events/chat room'
    const a = s.client(STACKS[va], server, room, { params: eventParams(), label: `${va} A (events)` })
    const ta = new EventTap(a)
    const b = s.client(STACKS[vb], server, room, { params: eventParams(), label: `${vb} B (events)` })
    const tb = new EventTap(b)
    const c = s.client(STACKS[vc], server, room, { label: `${vc} C (plain)` })
    const seenByC = recordMessageTypes(c.provider) // before its socket opens
    await Promise.all([a.synced(), b.synced(), c.synced()])
    assert.ok(a.provider.url.endsWith('?events=1'), `A opens ${a.provider.url}`)
    assert.ok(!c.provider.url.includes('?'), `C opens ${c.provider.url} (no query: not opted in)`)
    assert.ok(seenByC.count(0) > 0, 'the recorder on C sees its messages (sync)')

    // Three events each, sent interleaved without waiting: any JSON as data, and none at all.
    const fromA = [{ text: 'hi from A', n: 1 }, 'é 😀 \u0000 "quoted"', { nested: { list: [1, 2.5, { x: null }], t: true } }]
    const fromB = [{ text: 'hello from B' }, 42, undefined]
    const t0 = Date.now()
    for (let i = 0; i < 3; i++) {
      ta.emit('chat', fromA[i])
      tb.emit(i === 2 ? 'typing' : 'chat', fromB[i])
    }
    await waitTaps('A and B to get 3 acks and 3 events each', () =>
      ta.acks.length >= 3 && tb.acks.length >= 3 && ta.events.length >= 3 && tb.events.length >= 3, [ta, tb])
    const t1 = Date.now()

    // Acks: one per own event, increasing (each connection's events are numbered in the order it
    // sent them); together they are exactly 1..6 (a fresh document).
    assert.equal(ta.acks.length, 3)
    assert.equal(tb.acks.length, 3)
    assert.ok(strictlyIncreasing(ta.acks) && strictlyIncreasing(tb.acks), `acks increase: A ${ta.acks}, B ${tb.acks}`)
    assert.deepEqual([...ta.acks, ...tb.acks].sort((x, y) => x - y), [1, 2, 3, 4, 5, 6])

    // Each receives exactly the other's events, in the order sent, with the seq its sender was
    // acked, and never its own.
    assert.equal(tb.events.length, 3)
    assert.equal(ta.events.length, 3)
    const idA = tb.events[0].from
    const idB = ta.events[0].from
    assert.match(idA, /^peer:\d+$/, 'anonymous sender: from is peer:<id>')
    assert.match(idB, /^peer:\d+$/)
    assert.notEqual(idA, idB)
    tb.events.forEach((e, i) => assertEvent(e, { seq: ta.acks[i], type: 'chat', data: fromA[i], from: idA, atLeast: t0, atMost: t1 }, `B's event #${i} (from A)`))
    ta.events.forEach((e, i) => assertEvent(e, { seq: tb.acks[i], type: i === 2 ? 'typing' : 'chat', data: fromB[i] ?? null, from: idB, atLeast: t0, atMost: t1 }, `A's event #${i} (from B)`))
    // `at` is stamped in seq order.
    const all = [...ta.events, ...tb.events].sort((x, y) => x.seq - y.seq)
    assert.ok(all.every((e, i) => i === 0 || e.at >= all[i - 1].at), 'at never decreases with seq')
    // On each connection, events and acks together arrive in seq order.
    for (const tap of [ta, tb]) {
      const seqs = tap.received.map((r) => r.msg.seq ?? r.msg.ack)
      assert.ok(strictlyIncreasing(seqs), `${tap.label} received events and acks in seq order: ${seqs}`)
      assert.deepEqual(tap.errors, [])
      assert.deepEqual(tap.gaps, [])
    }

    // Barrier: A edits the document after every one of the six events was relayed (A has its 3
    // acks and B's 3 events, each queued by the server when it handled that event). C receiving
    // the edit means everything queued for C before it has been delivered.
    a.text.insert(0, 'after the events. ')
    await waitConverged([a, b, c], { what: 'A\'s edit made after the events to reach everyone' })
    assert.equal(seenByC.count(MESSAGE_EVENT), 0, `C never received a type-5 message; it received types ${[...new Set(seenByC.types)]}`)

    // C keeps working: its edits reach the opted-in clients.
    c.text.insert(c.text.length, ' C was here.')
    c.map.set('by', 'C')
    await waitConverged([a, b, c], { what: 'C\'s edit to reach A and B' })

    // Even when the plain client speaks the event protocol (asks for the history, emits an event:
    // an anonymous server lets everyone emit), it is sent nothing back: no replay, no ack. A and
    // B get its event.
    const typesBefore = seenByC.types.length
    c.provider.ws.send(eventFrame({ since: 0 }))
    c.provider.ws.send(eventFrame({ type: 'chat', data: 'from the plain client' }))
    await waitTaps('A and B to get C\'s event', () => ta.events.length >= 4 && tb.events.length >= 4, [ta, tb])
    const idC = ta.events[3].from
    for (const tap of [ta, tb]) {
      assertEvent(tap.events[3], { seq: 7, type: 'chat', data: 'from the plain client', from: /^peer:\d+$/ }, `${tap.label}'s event from C`)
      assert.equal(tap.events[3].from, idC)
    }
    assert.ok(idC !== idA && idC !== idB)
    // Barrier: B edits after having C's event (the server queued C's ack, had it sent one, when it
    // relayed that event; the replay before that).
    b.text.insert(0, 'after C spoke. ')
    await waitConverged([a, b, c], { what: 'B\'s edit made after C\'s event to reach everyone' })
    assert.equal(seenByC.count(MESSAGE_EVENT), 0, `C never received a type-5 message, not even after asking; types since: ${seenByC.types.slice(typesBefore)}`)
    assert.ok(seenByC.types.slice(typesBefore).includes(0), 'C did receive the edit in between')
    assert.equal(c.provider.wsconnected, true)

    // Nothing else reached A or B: exactly their 3 acks and 4 events.
    assert.deepEqual([ta.acks.length, ta.events.length, tb.acks.length, tb.events.length], [3, 4, 3, 4])
    t.diagnostic(`A ${idA} acks ${ta.acks}, B ${idB} acks ${tb.acks}, C ${idC} seq 7; C received types ${[...new Set(seenByC.types)]} (${seenByC.types.length} frames), none of type 5`)
  })
}

// ---- 2. replay after a reconnect ----------------------------------------------------------------

for (const v of ['v1', 'v2', 'v3']) {
  etest(`${v}: a client that reconnects and asks {since: lastSeen} gets exactly the events it missed, then live ones`, async (s, t) => {
    const server = await s.server()
    const room = 'events/replay'
    const a = s.client(STACKS.v3, server, room, { params: eventParams(), label: 'v3 A (events)' })
    const ta = new EventTap(a)
    // The observer stays connected throughout: what it got live is what B must get replayed.
    const o = s.client(STACKS.v1, server, room, { params: eventParams(), label: 'v1 observer (events)' })
    const to = new EventTap(o)
    // B asks for what it missed on every (re)connection, as an application would.
    const b = s.client(STACKS[v], server, room, { params: eventParams(), label: `${v} B (events, resumes)` })
    const tb = new EventTap(b, { resume: true })
    await Promise.all([a.synced(), o.synced(), b.synced()])

    ta.emit('chat', { n: 1 })
    ta.emit('chat', { n: 2 })
    await waitTaps('B to get A\'s first two events', () => tb.events.length >= 2 && ta.acks.length >= 2, [ta, tb])
    tb.emit('chat', { n: 3, by: 'B' })
    await waitTaps('B\'s ack and A\'s copy', () => tb.acks.length >= 1 && ta.events.length >= 1, [ta, tb])
    const lastSeen = tb.lastSeq
    assert.equal(lastSeen, 3)
    assert.deepEqual(tb.sinceSent, [0], 'B asked for the history once, on connecting (nothing there yet)')

    await b.disconnect()
    const receivedOffline = tb.received.length
    for (let n = 4; n <= 6; n++) ta.emit('chat', { n, missed: true })
    await waitTaps('A\'s acks for the events B misses, and the observer\'s copies', () => ta.acks.length >= 5 && to.events.length >= 6, [ta, to])
    assert.deepEqual(ta.acks, [1, 2, 4, 5, 6])
    assert.equal(tb.received.length, receivedOffline, 'B received nothing while disconnected')

    b.provider.connect()
    await b.synced()
    await waitTaps('B to get the 3 missed events', () => tb.events.length >= 5, [tb])
    assert.deepEqual(tb.sinceSent, [0, 3], 'B asked for the events after 3 on reconnecting')
    // One live event after the replay: the server queued it after the replay, so once B has it,
    // B has everything the replay sent.
    ta.emit('chat', { n: 7, live: true })
    await waitTaps('B to get the live event after the replay', () => tb.events.length >= 6 && ta.acks.length >= 6, [ta, tb])

    assert.deepEqual(tb.events.map((e) => e.seq), [1, 2, 4, 5, 6, 7], 'B has every event but its own, each once')
    assert.deepEqual(tb.acks, [3])
    assert.deepEqual(tb.gaps, [], 'no gap: the history still had them')
    const replayed = tb.received.filter((r) => r.msg.seq >= 4 && r.msg.seq <= 6)
    const live = to.received.filter((r) => r.msg.seq >= 4 && r.msg.seq <= 6)
    assert.deepEqual(replayed.map((r) => r.json), live.map((r) => r.json), 'the replayed events are byte-identical to the live ones')
    for (const r of replayed) assert.equal(r.socket, b.provider.ws, 'replayed on the new connection')
    replayed.forEach((r, i) => assertEvent(r.msg, { seq: 4 + i, type: 'chat', data: { n: 4 + i, missed: true }, from: to.events[0].from }, `replayed event ${4 + i}`))
    // The replay went to B alone: A (whose ack 7 the server queued after the replay) and the
    // observer got nothing extra.
    assert.deepEqual(ta.events.map((e) => e.seq), [3])
    await waitTaps('the observer to get the live event', () => to.events.length >= 7, [to])
    assert.deepEqual(to.events.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7])
    for (const tap of [ta, tb, to]) assert.deepEqual(tap.errors, [])
    t.diagnostic(`${v}: B saw up to ${lastSeen}, missed 4..6, got ${replayed.length} replayed on reconnect, then 7 live`)
  })
}

// ---- 3. bounded history: gap markers, restart ---------------------------------------------------

etest('--event-history 3: asking from further back gets a gap marker first; history and numbering survive SIGTERM + restart', async (s, t) => {
  const server = await s.server({ extraArgs: ['--event-history', '3'] })
  const room = 'events/history'
  const a = s.client(STACKS.v3, server, room, { params: eventParams(), label: 'v3 A (events)' })
  const ta = new EventTap(a)
  const o = s.client(STACKS.v2, server, room, { params: eventParams(), label: 'v2 observer (events)' })
  const to = new EventTap(o)
  await Promise.all([a.synced(), o.synced()])
  for (let n = 1; n <= 5; n++) ta.emit('chat', { n })
  await waitTaps('5 acks and the observer\'s 5 events', () => ta.acks.length >= 5 && to.events.length >= 5, [ta, to])
  assert.deepEqual(ta.acks, [1, 2, 3, 4, 5])
  const liveJson = (seq) => to.received.find((r) => r.msg.seq === seq).json

  // A client asks from several points; the answers arrive in the order asked.
  const f = s.client(STACKS.v1, server, room, { params: eventParams(), label: 'v1 F (events)' })
  const tf = new EventTap(f)
  await f.synced()
  for (const since of [0, 1, 2, 5, 4, 99, 3]) tf.since(since)
  const expected = [
    { gap: { from: 1, to: 2 } }, 3, 4, 5, // since 0
    { gap: { from: 2, to: 2 } }, 3, 4, 5, // since 1
    3, 4, 5, // since 2
    // since 5: nothing newer
    5, // since 4
    // since 99: nothing
    4, 5 // since 3
  ]
  await waitTaps('F\'s answers', () => tf.received.length >= expected.length, [tf])
  // Barrier: a live event, queued after every answer.
  ta.emit('chat', { n: 6 })
  await waitTaps('F to get the live event 6', () => tf.events.some((e) => e.seq === 6) && to.events.length >= 6, [tf, to])
  const got = tf.received.map((r) => ('seq' in r.msg ? r.msg.seq : r.msg))
  assert.deepEqual(got, [...expected, 6], 'gap markers first, then the kept events; nothing for since >= newest')
  for (const r of tf.received) {
    if ('seq' in r.msg) assert.equal(r.json, liveJson(r.msg.seq), `replayed ${r.msg.seq} is byte-identical to the live one`)
  }
  assert.deepEqual(tf.acks, [])

  // Restart: SIGTERM (exit 0) with the clients connected, same data dir, same flags.
  const before = { 4: liveJson(4), 5: liveJson(5), 6: liveJson(6) }
  const server2 = await s.restart(server)
  const g = s.client(STACKS.v3, server2, room, { params: eventParams(), label: 'v3 G (events, after restart)' })
  const tg = new EventTap(g)
  const h = s.client(STACKS.v1, server2, room, { params: eventParams(), label: 'v1 H (events, after restart)' })
  const th = new EventTap(h)
  await Promise.all([g.synced(), h.synced()])
  tg.since(0)
  await waitTaps('G\'s replay after the restart', () => tg.received.length >= 4, [tg])
  assert.deepEqual(tg.received.map((r) => r.msg)[0], { gap: { from: 1, to: 3 } })
  assert.deepEqual(tg.received.slice(1).map((r) => r.json), [before[4], before[5], before[6]], 'the kept events survive the restart byte for byte (seq, from, at)')
  // Numbering continues after the restart.
  tg.emit('chat', { n: 'after restart' })
  await waitTaps('G\'s ack and H\'s copy', () => tg.acks.length >= 1 && th.events.length >= 1, [tg, th])
  assert.deepEqual(tg.acks, [7], 'the first event after the restart is 7')
  assertEvent(th.events[0], { seq: 7, type: 'chat', data: { n: 'after restart' }, from: /^peer:\d+$/ }, 'H\'s live event after the restart')
  // And the new event is in the history with the old ones.
  th.since(4)
  await waitTaps('H\'s replay of 5..7', () => th.events.length >= 4, [th])
  assert.deepEqual(th.events.map((e) => e.seq), [7, 5, 6, 7])
  assert.deepEqual(th.gaps, [])
  t.diagnostic(`restart took ${server.stopResult.ms} ms to exit; history after restart: ${tg.received.map((r) => r.json).join(' ')}`)
})

// ---- 4. rights ----------------------------------------------------------------------------------

for (const v of ['v1', 'v3']) {
  etest(`${v}: with tokens, a read token's event is refused with permission denied and goes nowhere; events and write tokens' events are delivered`, async (s, t) => {
    const kit = await AuthKit.create(s)
    const server = await s.server({ extraArgs: kit.serveArgs, env: { RUST_LOG: 'debug' } })
    const room = 'events/auth'
    const writer = await kit.mint({ docs: [room], rights: 'write', sub: 'walter' })
    const reader = await kit.mint({ docs: [room], rights: 'read', sub: 'rita' })
    const emitter = await kit.mint({ docs: ['events/*'], rights: 'events', sub: 'erin' })

    const warnings = captureConsoleWarn(PERMISSION_WARNING)
    try {
      const w = s.client(STACKS[v], server, room, { params: eventParams(writer), label: `${v} walter (write)` })
      const tw = new EventTap(w)
      const r = s.client(STACKS[v], server, room, { params: eventParams(reader), label: `${v} rita (read)` })
      const tr = new EventTap(r)
      const tapR = tapProvider(r.provider) // wraps the type-5 handler too: records every message
      const e = s.client(STACKS[v], server, room, { params: eventParams(emitter), label: `${v} erin (events)` })
      const te = new EventTap(e)
      await Promise.all([w.synced(), r.synced(), e.synced()])

      // The reader emits: refused, with a permission-denied auth message, which y-websocket warns.
      tr.emit('chat', { text: 'from a reader' })
      await waitFor(() => tapR.denied.length >= 1, { timeout: EVENT_TIMEOUT_MS, what: 'the reader to be told permission denied', detail: () => tapR.kinds })
      assert.equal(tapR.count(MESSAGE_AUTH, AUTH_PERMISSION_DENIED), 1)
      assert.match(tapR.denied[0], /event/i, 'the refusal says it is about events')
      await waitFor(() => warnings.captured.length >= 1, { timeout: EVENT_TIMEOUT_MS, what: 'y-websocket to console.warn the refusal' })
      assert.ok(warnings.captured[0].includes(tapR.denied[0]), `the warning carries the server's reason: ${redact(warnings.captured[0])}`)

      // The events token's event is delivered (to the reader too: reading includes events), with
      // seq 1: the reader's event never got a number, so it was never relayed or kept.
      const t0 = Date.now()
      te.emit('chat', { text: 'from erin' })
      await waitTaps('erin\'s event to reach walter and rita', () => tw.events.length >= 1 && tr.events.length >= 1 && te.acks.length >= 1, [tw, tr, te])
      const t1 = Date.now()
      assert.deepEqual(te.acks, [1])
      for (const tap of [tw, tr]) assertEvent(tap.events[0], { seq: 1, type: 'chat', data: { text: 'from erin' }, from: 'erin', atLeast: t0, atMost: t1 }, `${tap.label} gets erin's event`)
      // The write token's too (write implies events).
      tw.emit('chat', { text: 'from walter' })
      await waitTaps('walter\'s event', () => te.events.length >= 1 && tr.events.length >= 2 && tw.acks.length >= 1, [tw, tr, te])
      assert.deepEqual(tw.acks, [2])
      for (const tap of [te, tr]) assertEvent(tap.events.at(-1), { seq: 2, type: 'chat', data: { text: 'from walter' }, from: 'walter' }, `${tap.label} gets walter's event`)

      // The reader may read the history.
      tr.since(0)
      await waitTaps('the reader\'s replay', () => tr.events.length >= 4, [tr])
      assert.deepEqual(tr.events.map((ev) => [ev.seq, ev.from]), [[1, 'erin'], [2, 'walter'], [1, 'erin'], [2, 'walter']])

      // Nothing of the reader's anywhere, no ack for it; it stays connected and in sync.
      for (const tap of [tw, te, tr]) assert.ok(!tap.events.some((ev) => ev.from === 'rita'), `${tap.label} has no event from rita`)
      assert.deepEqual(tr.acks, [])
      assert.deepEqual(tw.events.map((ev) => ev.seq), [1])
      w.text.insert(0, 'walter writes')
      await waitConverged([w, r, e], { what: 'walter\'s edit to reach rita and erin' })
      assert.equal(r.provider.wsconnected, true)
      assert.deepEqual(tr.closes, [], 'the reader was never disconnected')
      assert.equal(tapR.denied.length, 1, 'exactly one refusal')
      assert.equal(warnings.captured.length, 1)

      await server.stop()
      assert.ok(server.records.some((rec) => rec.level === 'DEBUG' && /custom events/.test(rec.fields?.message ?? '') && rec.fields?.denied_events === 1),
        'the server logged (at DEBUG) one dropped event')
      assert.deepEqual(kit.leaks(server), [], 'no token or secret in the log')
      t.diagnostic(`${v}: reader told ${JSON.stringify(tapR.denied[0])}`)
    } finally {
      warnings.restore()
    }
  })
}

// ---- 5. limits ----------------------------------------------------------------------------------

/** An event message `{"type": "big", "data": "xxx..."}` whose JSON is exactly `bytes` long. */
function eventOfJsonLength (bytes) {
  const overhead = JSON.stringify({ type: 'big', data: '' }).length
  const message = { type: 'big', data: 'x'.repeat(bytes - overhead) }
  assert.equal(JSON.stringify(message).length, bytes)
  return message
}

/** An offender, an opted-in bystander and a plain bystander in one document, all synced. */
async function limitsRoom (s, server, offenderVersion) {
  const room = 'events/limits'
  const x = s.client(STACKS[offenderVersion], server, room, { params: eventParams(), label: `${offenderVersion} X (offender)` })
  const tx = new EventTap(x)
  const b = s.client(STACKS.v3, server, room, { params: eventParams(), label: 'v3 B (events)' })
  const tb = new EventTap(b)
  const c = s.client(STACKS.v2, server, room, { label: 'v2 C (plain)' })
  const seenByC = recordMessageTypes(c.provider)
  await Promise.all([x.synced(), b.synced(), c.synced()])
  return { x, tx, b, tb, c, seenByC }
}

/**
 * After the offender was cut off: it reconnects, events flow both ways, the bystanders were never
 * touched. Returns the seq X's first event after reconnecting got (`nextSeq` when given).
 */
async function afterOffence ({ x, tx, b, tb, c, seenByC }, nextSeq) {
  await waitReconnected(x)
  const idBefore = tb.events.at(-1)?.from
  const acksBefore = tx.acks.length
  tx.emit('chat', 'X again')
  await waitTaps('X\'s event after reconnecting', () => tb.events.some((e) => e.data === 'X again') && tx.acks.length > acksBefore, [tx, tb])
  const seq = tx.acks.at(-1)
  if (nextSeq !== undefined) assert.equal(seq, nextSeq, 'the refused event took no sequence number')
  assertEvent(tb.events.at(-1), { seq, type: 'chat', data: 'X again', from: /^peer:\d+$/ }, 'B gets X\'s event after its reconnect')
  if (idBefore) assert.notEqual(tb.events.at(-1).from, idBefore, 'a new connection is a new peer')
  tb.emit('chat', 'B to X')
  await waitTaps('B\'s event to reach X', () => tx.events.some((e) => e.data === 'B to X'), [tx, tb])
  assert.equal(tx.events.at(-1).seq, seq + 1)
  b.text.insert(0, 'B after the offence. ')
  x.text.insert(0, 'X after the offence. ')
  await waitConverged([x, b, c], { what: 'edits after the offence' })
  assert.deepEqual(tb.closes, [], 'B was never disconnected')
  assert.equal(b.provider.wsconnected && c.provider.wsconnected, true)
  assert.equal(seenByC.count(MESSAGE_EVENT), 0, 'the plain client never received a type-5 message')
  for (const tap of [tx, tb]) assert.deepEqual(tap.errors, [])
  return seq
}

for (const v of ['v1', 'v3']) {
  etest(`${v}: an event of exactly --max-event-bytes (default 65536) passes, one byte more closes that connection with 1008; the others are unaffected`, async (s, t) => {
    const server = await s.server()
    s.expectWarning(server, WARN_EVENT_TOO_LARGE)
    const room = await limitsRoom(s, server, v)
    const { tx, tb } = room

    const atLimit = eventOfJsonLength(65536)
    tx.send(eventFrame(atLimit))
    await waitTaps('the 65536-byte event to reach B', () => tb.events.length >= 1 && tx.acks.length >= 1, [tx, tb])
    assertEvent(tb.events[0], { seq: 1, type: 'big', data: atLimit.data, from: /^peer:\d+$/ }, 'B gets the event at the limit')

    tx.send(eventFrame(eventOfJsonLength(65537)))
    await waitTaps('X to be closed', () => tx.closes.length >= 1, [tx])
    assert.deepEqual(tx.closes, [1008], 'closed with 1008 (policy violation), seen by the provider')
    await waitWarnings(server, WARN_EVENT_TOO_LARGE, 1)

    await afterOffence(room, 2) // the oversized event took no sequence number
    assert.equal(tb.events.filter((e) => e.type === 'big').length, 1, 'B never got the oversized event')
    assert.deepEqual(tx.closes, [1008])
    t.diagnostic(`${v}: 65536-byte event delivered, 65537-byte closed with ${tx.closes[0]}`)
  })
}

etest('v3: an event over --events-per-sec / --event-burst closes that connection with 1008; the events admitted before are delivered in order', async (s, t) => {
  const server = await s.server({ extraArgs: ['--events-per-sec', '1', '--event-burst', '3'] })
  s.expectWarning(server, WARN_EVENT_RATE)
  const room = await limitsRoom(s, server, 'v3')
  const { tx, tb } = room

  // The bucket starts full (3) and refills one event a second. Three events sent at once pass;
  // the test waits until the server has handled them (their acks) before sending the fourth, so
  // what it checks does not depend on the server handling events still in flight from a
  // connection it is closing (today it does not reliably: messages of a connection that are still
  // queued for the document when the connection ends can be dropped).
  // Nothing is sent after the fourth either: unread client data when the server drops the socket
  // can reset the connection and destroy the close frame (the client then sees 1006).
  const t0 = Date.now()
  for (let i = 0; i < 3; i++) tx.emit('burst', i)
  await waitTaps('the 3 events of the burst to be acked and relayed', () => tx.acks.length >= 3 && tb.events.length >= 3, [tx, tb])
  tx.emit('burst', 3)
  await waitTaps('X to be closed', () => tx.closes.length >= 1, [tx])
  const elapsed = Date.now() - t0
  assert.ok(elapsed < 1000, `the 4th event was sent within a second of the first (${elapsed} ms), before the bucket refilled`)
  assert.deepEqual(tx.closes, [1008], 'closed with 1008 (policy violation), seen by the provider')
  await waitWarnings(server, WARN_EVENT_RATE, 1)

  // X's event after reconnecting is seq 4: the refused one took no number and went nowhere.
  await afterOffence(room, 4)
  const burst = tb.events.filter((e) => e.type === 'burst')
  assert.deepEqual(burst.map((e) => [e.seq, e.data]), [[1, 0], [2, 1], [3, 2]], 'the first 3 were delivered, in order, the 4th was not')
  assert.deepEqual(tx.acks.slice(0, 3), [1, 2, 3])
  t.diagnostic(`3 events admitted, the 4th closed with ${tx.closes[0]} (${elapsed} ms after the first)`)
})

etest('v2: a malformed event message closes that connection with 1002; the others are unaffected', async (s, t) => {
  const server = await s.server()
  const bad = ['not json', '{"type": "", "data": 1}', '{"since": 1, "type": "chat"}', '{"type": "chat", "data": 1, "extra": true}', '[1, 2]', '{"since": -1}']
  s.expectWarning(server, WARN_MALFORMED, bad.length)
  const room = await limitsRoom(s, server, 'v2')
  const { x, tx } = room
  for (const [i, json] of bad.entries()) {
    await waitReconnected(x)
    tx.send(eventFrameFromJson(json))
    await waitTaps(`X to be closed for ${json}`, () => tx.closes.length >= i + 1, [tx])
    assert.equal(tx.closes[i], 1002, `${json}: closed with 1002 (protocol error)`)
    await waitWarnings(server, WARN_MALFORMED, i + 1)
  }
  await afterOffence(room, 1)
  t.diagnostic(`${bad.length} malformed event messages, each closed with 1002`)
})
