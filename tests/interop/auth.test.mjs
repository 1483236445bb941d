// Token authentication with the real clients: every server here runs with `--jwt-secret-file` (a
// fresh random secret per test) and RUST_LOG=trace, and every token is minted by the binary's own
// `tandem token` subcommand and handed to y-websocket the way applications do, `params: { token }`
// (sent as `?token=`).
//
// - writers converge; a read-only viewer gets everything live but none of its own edits reach the
//   server (the server's state stays byte-identical), and it is told so with a y-protocols
//   permission-denied auth message that every y-websocket major console.warns and survives;
// - an invisible viewer (`read,-presence`) gets its own awareness updates echoed back to it alone
//   (so a lone invisible y-websocket client still hears from the server and does not hit its 30 s
//   no-message timeout), and nobody else ever sees it: not the writers, not late joiners, not raw
//   readers, not in a query-awareness answer, not its removal;
// - a missing, garbage, forged or other-document token is refused before the upgrade (401 / 401 /
//   401 / 403) without disturbing connected writers;
// - a token expiring while connected closes with 4401;
// - a token is refused from the second its `exp` names (`now >= exp`, RFC 7519), and connections
//   opened before it that write at that second are closed with 4401 without the write applied;
// - at the end of every test (server stopped), no log line holds a token, part of one, or the
//   secret.
//
// The reference server (npm run test:reference) has no authentication: these tests are skipped
// there.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'

import {
  AuthKit, IS_REFERENCE_SERVER, MESSAGE_AWARENESS, MESSAGE_QUERY_AWARENESS, MESSAGE_SYNC, RawPeer, SYNC_STEP1,
  SYNC_STEP2, SYNC_UPDATE, captureConsoleWarn, fetchServerState, handshake, redact, tapProvider, tokenClaims,
  updateMessage
} from './lib/auth.mjs'
import { concurrentEditing } from './lib/edits.mjs'
import { itest, waitConverged, waitFor } from './lib/harness.mjs'
import { STACKS, VERSIONS } from './lib/stack.mjs'

const skip = IS_REFERENCE_SERVER && 'the reference server has no authentication'
const atest = (name, fn) => itest(name, fn, { skip })

/** Presence deadline: far below the clients' 15 s renewal / 30 s timeout, so passing means the server did it. */
const AWARENESS_TIMEOUT_MS = 5_000

/** What y-websocket (all majors) console.warns when it receives a permission-denied auth message. */
const PERMISSION_WARNING = /^Permission denied to access /

/** Starts a server that requires tokens signed with `kit`'s secret, logging everything (trace). */
function authServer (s, kit, { extraArgs = [] } = {}) {
  return s.server({ extraArgs: [...kit.serveArgs, ...extraArgs], env: { RUST_LOG: 'trace' } })
}

/** `ws://HOST:PORT/ws/ROOM[?token=...]`, the URL y-websocket builds from `params: { token }`. */
function roomUrl (server, room, token) {
  return `${server.wsUrl}/${room}${token === undefined ? '' : `?token=${encodeURIComponent(token)}`}`
}

/**
 * Stops the server (SIGTERM, exit 0) so its log is complete, then requires that no log line holds
 * a token used in the test, a part of one, or the secret, and that the trace filter really was on.
 */
async function stopAndCheckLogs (server, kit, t) {
  await server.stop()
  const lines = server.stdoutLines.length + server.stderrLines.length
  assert.ok(server.records.some((r) => r.level === 'TRACE'), 'the server logged at TRACE level (RUST_LOG=trace is in effect)')
  assert.ok(server.records.some((r) => r.level === 'DEBUG' && String(r.target).startsWith('tandem')), 'tandem itself logged at DEBUG level')
  const leaks = kit.leaks(server)
  assert.deepEqual(leaks, [], `the server's log (${lines} lines at RUST_LOG=trace) must not contain any token or the secret`)
  t.diagnostic(`${server.label}: ${lines} log lines (RUST_LOG=trace) searched for ${kit.tokens.size} tokens (whole, payload, signature) and the secret: none found`)
}

const stateOf = (observer, subject) => observer.awareness.getStates().get(subject.clientID)

function waitState (observer, subject, expected, what) {
  return waitFor(() => isDeepStrictEqual(stateOf(observer, subject) ?? null, expected), {
    timeout: AWARENESS_TIMEOUT_MS,
    what: `${observer.label} to see ${subject.label}'s awareness state ${JSON.stringify(expected)} (${what})`,
    detail: () => Object.fromEntries([...observer.awareness.getStates()].map(([k, v]) => [k, v]))
  })
}

const textOf = (c) => c.text.toString()

/** Counts a provider's `status: disconnected` events from now on. */
function countDisconnects (client) {
  const counter = { disconnects: 0 }
  client.provider.on('status', ({ status }) => { if (status === 'disconnected') counter.disconnects++ })
  return counter
}

// ---- 1. writers -------------------------------------------------------------------------------

for (const [va, vb] of [['v3', 'v3'], ['v1', 'v3']]) {
  atest(`${va} + ${vb}: writers with tokens from \`tandem token\` converge on Y.Text / Y.Map / Y.Array edits`, async (s, t) => {
    const kit = await AuthKit.create(s)
    const server = await authServer(s, kit)
    const room = 'notes/2024/plan'
    const alice = await kit.mint({ docs: ['notes/*'], rights: 'write', sub: 'alice' })
    const bob = await kit.mint({ docs: ['notes/2024/plan'], rights: 'write', sub: 'bob' })

    const a = await s.syncedClient(STACKS[va], server, room, { params: { token: alice }, label: `${va} writer alice` })
    const b = await s.syncedClient(STACKS[vb], server, room, { params: { token: bob }, label: `${vb} writer bob` })
    // The token really travels in the URL the client opens.
    assert.ok(a.provider.url.endsWith(`?token=${alice}`), `alice's provider URL carries her token: ${redact(a.provider.url)}`)
    assert.ok(b.provider.url.endsWith(`?token=${bob}`), `bob's provider URL carries his token: ${redact(b.provider.url)}`)

    const expected = await concurrentEditing([a, b])

    // Their presence goes through too (write includes presence).
    a.awareness.setLocalState({ user: { name: 'alice' } })
    b.awareness.setLocalState({ user: { name: 'bob' } })
    await waitState(a, b, { user: { name: 'bob' } }, 'writer presence')
    await waitState(b, a, { user: { name: 'alice' } }, 'writer presence')

    // A fresh reader gets the merged document: it really is on the server.
    const reader = await kit.mint({ docs: ['notes/*'], rights: 'read', sub: 'reader' })
    const c = await s.syncedClient(STACKS.v3, server, room, { params: { token: reader }, label: 'v3 fresh reader' })
    assert.deepEqual(c.snapshot(), expected)

    await stopAndCheckLogs(server, kit, t)
  })
}

// ---- 2. read-only viewer ----------------------------------------------------------------------

for (const v of VERSIONS) {
  atest(`${v}: a read-only viewer gets edits and presence live, its own edits never reach the server, it is told permission denied and stays connected`, async (s, t) => {
    const kit = await AuthKit.create(s)
    const server = await authServer(s, kit)
    const room = 'notes/readonly'
    const writerToken = await kit.mint({ docs: ['notes/*'], rights: 'write', sub: 'writer' })
    const viewerToken = await kit.mint({ docs: ['notes/*'], rights: 'read', sub: 'viewer' })
    const readerToken = await kit.mint({ docs: ['notes/readonly'], rights: 'read', sub: 'fresh-reader' })
    const warnings = captureConsoleWarn(PERMISSION_WARNING)
    try {
      const a = await s.syncedClient(STACKS[v], server, room, { params: { token: writerToken }, label: `${v} writer A` })
      const b = await s.syncedClient(STACKS.v3, server, room, { params: { token: writerToken }, label: 'v3 writer B' })
      const viewer = s.client(STACKS[v], server, room, { params: { token: viewerToken }, label: `${v} viewer` })
      const tap = tapProvider(viewer.provider) // before any message can arrive
      await viewer.synced()
      const viewerLife = countDisconnects(viewer)
      // Connecting sent an empty sync step 2 (the viewer had nothing): that is not a change.
      assert.deepEqual(tap.denied, [], 'no permission-denied message for the viewer\'s empty handshake')

      // Writers edit; the viewer receives every edit live.
      a.text.insert(0, 'Hello from A.')
      a.map.set('owner', 'A')
      b.text.insert(0, '[B] ')
      b.map.set('nested', new STACKS.v3.Y.Map([['by', 'B']]))
      const before = await waitConverged([a, b, viewer], { what: 'the viewer to receive the writers\' edits' })
      assert.ok(before.doc.text.includes('Hello from A.') && before.doc.text.includes('[B] '))
      assert.ok(tap.count(MESSAGE_SYNC, SYNC_UPDATE) > 0, 'the viewer got the edits as live updates')

      // Presence: the viewer sees the writers, and the writers see the viewer (read includes presence).
      a.awareness.setLocalState({ user: { name: 'A' } })
      b.awareness.setLocalState({ user: { name: 'B' } })
      viewer.awareness.setLocalState({ user: { name: 'viewer' }, cursor: 3 })
      await waitState(viewer, a, { user: { name: 'A' } }, 'viewer sees writer A')
      await waitState(viewer, b, { user: { name: 'B' } }, 'viewer sees writer B')
      await waitState(a, viewer, { user: { name: 'viewer' }, cursor: 3 }, 'writer A sees the viewer')
      await waitState(b, viewer, { user: { name: 'viewer' }, cursor: 3 }, 'writer B sees the viewer')

      // The state on the server before the viewer's edit: as a fresh client receives it, and as
      // the server encodes it (its sync step 2 to an empty state vector, read by a raw client).
      const fresh1 = await s.syncedClient(STACKS.v3, server, room, { params: { token: readerToken }, label: 'v3 fresh reader #1' })
      const Y = STACKS.v3.Y
      const stateBefore = Buffer.from(Y.encodeStateAsUpdate(fresh1.doc))
      const svBefore = Buffer.from(Y.encodeStateVector(fresh1.doc))
      const rawBefore = await fetchServerState(roomUrl(server, room, readerToken))

      // The viewer edits locally: two transactions, two update messages, two refusals.
      viewer.text.insert(0, 'VIEWER-EDIT ')
      viewer.map.set('viewer-key', 'viewer-value')
      assert.ok(textOf(viewer).startsWith('VIEWER-EDIT '), 'the edit is applied locally')
      await waitFor(() => tap.denied.length >= 2, {
        timeout: 5_000,
        what: 'the viewer to receive two permission-denied auth messages',
        detail: () => ({ denied: tap.denied, kinds: tap.kinds })
      })
      for (const reason of tap.denied) assert.match(reason, /read-only|permission/i, 'the refusal says why')
      // y-websocket's own handler ran: it console.warns "Permission denied to access <url>.\n<reason>".
      await waitFor(() => warnings.captured.length >= 2, { timeout: 5_000, what: 'two permission-denied console.warn calls' })
      for (const w of warnings.captured) {
        assert.ok(w.includes(`Permission denied to access ${viewer.provider.url}.`), `warning names the viewer's URL: ${redact(w)}`)
        assert.ok(w.includes(tap.denied[0]), 'warning carries the server\'s reason')
      }
      t.diagnostic(`${v} viewer: permission denied reason ${JSON.stringify(tap.denied[0])}; y-websocket console.warn: ${JSON.stringify(redact(warnings.captured[0]))}`)

      // The server's state is byte-identical to before the edit. The refusals above were sent
      // after the server handled (and dropped) both updates, so this is not too early to look.
      const fresh2 = await s.syncedClient(STACKS.v3, server, room, { params: { token: readerToken }, label: 'v3 fresh reader #2' })
      assert.deepEqual(Buffer.from(Y.encodeStateAsUpdate(fresh2.doc)), stateBefore, 'a fresh client gets exactly the same state as before the viewer\'s edit')
      assert.deepEqual(Buffer.from(Y.encodeStateVector(fresh2.doc)), svBefore)
      assert.deepEqual(await fetchServerState(roomUrl(server, room, readerToken)), rawBefore, 'the server encodes exactly the same document as before the viewer\'s edit')
      assert.ok(!fresh2.knownClients().includes(viewer.clientID), 'no operation of the viewer is on the server')

      // The viewer is still connected and still receives live edits.
      a.text.insert(a.text.length, ' After the viewer.')
      const others = [a, b, fresh1, fresh2]
      const after = await waitConverged(others, { what: 'writers and fresh readers to converge after the viewer\'s edit' })
      await waitFor(() => textOf(viewer).includes(' After the viewer.'), { what: 'the viewer to receive A\'s edit made after its refused edit' })
      assert.equal(viewer.provider.wsconnected, true, 'the viewer stays connected')
      assert.equal(viewerLife.disconnects, 0, 'the viewer was never disconnected')
      assert.ok(textOf(viewer).startsWith('VIEWER-EDIT '), 'the viewer keeps its own (unshared) edit: the client is not rolled back')
      for (const c of others) {
        assert.ok(!textOf(c).includes('VIEWER-EDIT'), `${c.label} does not have the viewer's text`)
        assert.equal(c.map.has('viewer-key'), false, `${c.label} does not have the viewer's map key`)
        assert.ok(!c.knownClients().includes(viewer.clientID), `${c.label} has no operation of the viewer`)
      }
      assert.ok(after.doc.text.includes(' After the viewer.'))

      // A client connecting afterwards (of the viewer's version) does not have it either.
      const late = await s.syncedClient(STACKS[v], server, room, { params: { token: readerToken }, label: `${v} late reader` })
      assert.deepEqual(late.snapshot(), after)

      // Still exactly two refusals (nothing else was refused), and the viewer is still visible.
      assert.equal(tap.denied.length, 2)
      assert.deepEqual(stateOf(a, viewer), { user: { name: 'viewer' }, cursor: 3 })
      await stopAndCheckLogs(server, kit, t)
    } finally {
      warnings.restore()
    }
  })
}

// ---- 3. invisible viewer ----------------------------------------------------------------------

/** The entries about `subject` among the awareness entries `entries`. */
const entriesAbout = (entries, subject) => entries.filter((e) => e.client === subject.clientID)

for (const v of ['v3', 'v1']) {
  atest(`${v}: an invisible viewer (read,-presence) sees everyone, gets its own presence echoed back to it alone, and is never seen by anyone else`, async (s, t) => {
    const kit = await AuthKit.create(s)
    const server = await authServer(s, kit)
    const room = 'notes/invisible'
    const writerToken = await kit.mint({ docs: ['notes/*'], rights: 'write', sub: 'writer' })
    const viewerToken = await kit.mint({ docs: ['notes/*'], rights: 'read', sub: 'viewer' })
    const ghostToken = await kit.mint({ docs: ['notes/*'], rights: 'read,-presence', sub: 'ghost' })

    const a = s.client(STACKS.v3, server, room, { params: { token: writerToken }, label: 'v3 writer A' })
    const b = s.client(STACKS.v1, server, room, { params: { token: viewerToken }, label: 'v1 viewer B' })
    const tapA = tapProvider(a.provider)
    const tapB = tapProvider(b.provider)
    // A raw reader, there from before the ghost arrives: records every message the server sends it.
    const raw = await RawPeer.open(roomUrl(server, room, viewerToken), { label: 'raw reader' })
    await a.synced()
    await b.synced()
    a.awareness.setLocalState({ user: { name: 'A' } })
    b.awareness.setLocalState({ user: { name: 'B' } })
    await waitState(b, a, { user: { name: 'A' } }, 'B sees A')
    await waitState(a, b, { user: { name: 'B' } }, 'A sees B')

    // The ghost connects (y-websocket announces its initial `{}` state on open) and then sets a state.
    const ghost = s.client(STACKS[v], server, room, { params: { token: ghostToken }, label: `${v} invisible viewer` })
    const tapG = tapProvider(ghost.provider)
    await ghost.synced()
    const ghostStates = [{}, { user: { name: 'ghost' } }, { user: { name: 'ghost' }, cursor: 7 }]
    ghost.awareness.setLocalState(ghostStates[1])
    ghost.awareness.setLocalStateField('cursor', 7)

    // The ghost gets its own presence back (what keeps a lone y-websocket client from hitting its
    // 30 s no-message timeout): exactly the states it sent, nothing else about itself.
    await waitFor(() => entriesAbout(tapG.awarenessEntries, ghost).some((e) => isDeepStrictEqual(e.state, ghostStates[2])), {
      timeout: AWARENESS_TIMEOUT_MS,
      what: 'the ghost to receive its own awareness state back',
      detail: () => tapG.awarenessEntries
    })
    for (const e of entriesAbout(tapG.awarenessEntries, ghost)) {
      assert.ok(ghostStates.some((st) => isDeepStrictEqual(st, e.state)), `the ghost only gets back states it set itself: ${JSON.stringify(e)}`)
    }

    // It sees the others' presence and receives the document.
    await waitState(ghost, a, { user: { name: 'A' } }, 'the ghost sees A')
    await waitState(ghost, b, { user: { name: 'B' } }, 'the ghost sees B')
    a.text.insert(0, 'written by A')
    await waitConverged([a, b, ghost], { what: 'the ghost to receive A\'s edit' })

    // Barrier: the server handles one connection's frames in order, so once it answers a sync
    // step 1 the ghost sends now, it has handled the ghost's awareness frames sent before; had it
    // relayed them, they would be queued to the others ahead of anything the document sends later.
    const step2Before = tapG.count(MESSAGE_SYNC, SYNC_STEP2)
    ghost.provider.ws.send(Uint8Array.from([MESSAGE_SYNC, SYNC_STEP1, 1, 0]))
    await waitFor(() => tapG.count(MESSAGE_SYNC, SYNC_STEP2) > step2Before, { what: 'the server\'s sync step 2 answering the ghost\'s step 1' })
    // Something A does now reaches everyone after anything the ghost's frames could have caused.
    const tick1 = { user: { name: 'A' }, tick: 1 }
    a.awareness.setLocalStateField('tick', 1)
    await waitState(b, a, tick1, 'B sees A\'s tick')
    await waitState(ghost, a, tick1, 'the ghost sees A\'s tick')
    await waitFor(() => entriesAbout(raw.awarenessEntries, a).some((e) => isDeepStrictEqual(e.state, tick1)), { what: 'the raw reader to receive A\'s tick' })

    // Late joiners receive everyone's current state on connect, and not the ghost's: a y-websocket
    // client and a raw reader.
    const c = s.client(STACKS.v3, server, room, { params: { token: viewerToken }, label: 'v3 late viewer C' })
    const tapC = tapProvider(c.provider)
    const rawLate = await RawPeer.open(roomUrl(server, room, viewerToken), { label: 'late raw reader' })
    await c.synced()
    await waitState(c, a, tick1, 'late joiner sees A')
    await waitState(c, b, { user: { name: 'B' } }, 'late joiner sees B')
    await waitFor(() => rawLate.awarenessClients.has(a.clientID) && rawLate.awarenessClients.has(b.clientID), { what: 'the late raw reader to receive A\'s and B\'s states on connect' })

    // Asked for everyone's state (query-awareness), the server answers with A's and B's in one
    // message, without the ghost's.
    const answerFrom = raw.messages.length
    raw.send(Uint8Array.from([MESSAGE_QUERY_AWARENESS]))
    const answer = await waitFor(() => raw.messages.slice(answerFrom).find((m) => m.type === MESSAGE_AWARENESS &&
      m.entries.some((e) => e.client === a.clientID) && m.entries.some((e) => e.client === b.clientID)), {
      what: 'the server\'s answer to the raw reader\'s query-awareness',
      detail: () => raw.messages.slice(answerFrom)
    })
    assert.ok(!answer.entries.some((e) => e.client === ghost.clientID), `the query-awareness answer does not list the ghost: ${JSON.stringify(answer.entries)}`)

    // The ghost leaves presence explicitly: the removal too goes back to it alone. Once it has its
    // removal back, the server has handled it; A's next change then reaches everyone after
    // anything that removal could have caused.
    ghost.awareness.setLocalState(null)
    await waitFor(() => entriesAbout(tapG.awarenessEntries, ghost).some((e) => e.state === null), {
      what: 'the ghost to receive its own awareness removal back',
      detail: () => entriesAbout(tapG.awarenessEntries, ghost)
    })
    const tick2 = { user: { name: 'A' }, tick: 2 }
    a.awareness.setLocalStateField('tick', 2)
    await waitState(b, a, tick2, 'B sees A\'s second tick')
    await waitState(c, a, tick2, 'C sees A\'s second tick')
    await waitState(ghost, a, tick2, 'the ghost sees A\'s second tick')
    for (const r of [raw, rawLate]) {
      await waitFor(() => entriesAbout(r.awarenessEntries, a).some((e) => isDeepStrictEqual(e.state, tick2)), { what: `the ${r.label} to receive A's second tick` })
    }

    // Nobody but the ghost ever received anything naming it: neither a state nor a removal.
    for (const [observer, tap] of [[a, tapA], [b, tapB], [c, tapC]]) {
      assert.equal(observer.awareness.getStates().has(ghost.clientID), false, `${observer.label}'s awareness does not have the ghost`)
      assert.equal(tap.awarenessClients.has(ghost.clientID), false, `${observer.label} never received an awareness message naming the ghost (${ghost.clientID})`)
      assert.ok(tap.count(MESSAGE_AWARENESS) > 0, `${observer.label} did receive awareness messages`)
    }
    for (const r of [raw, rawLate]) {
      assert.equal(r.awarenessClients.has(ghost.clientID), false, `the ${r.label} never received an awareness message naming the ghost (${ghost.clientID})`)
      assert.ok(r.count(MESSAGE_AWARENESS) > 0, `the ${r.label} did receive awareness messages`)
    }
    // The ghost did: its own states and removal, and nothing about itself it did not send.
    assert.ok(tapG.awarenessClients.has(ghost.clientID), 'the ghost received its own presence back')
    for (const e of entriesAbout(tapG.awarenessEntries, ghost)) {
      assert.ok(e.state === null || ghostStates.some((st) => isDeepStrictEqual(st, e.state)), `the ghost only gets back what it sent: ${JSON.stringify(e)}`)
    }
    assert.equal(ghost.provider.wsconnected, true, 'the ghost stays connected')
    t.diagnostic(`the ghost received ${entriesAbout(tapG.awarenessEntries, ghost).length} awareness entries about itself; A, B, C and two raw readers none`)

    // Alone in a document, an invisible viewer still hears back from the server when it renews
    // its presence: there is nobody else whose messages would keep its connection alive.
    const alone = s.client(STACKS[v], server, 'notes/invisible-alone', { params: { token: ghostToken }, label: `${v} lone invisible viewer` })
    const tapAlone = tapProvider(alone.provider)
    await alone.synced()
    alone.awareness.setLocalState({ user: { name: 'alone' } })
    await waitFor(() => entriesAbout(tapAlone.awarenessEntries, alone).some((e) => isDeepStrictEqual(e.state, { user: { name: 'alone' } })), {
      timeout: AWARENESS_TIMEOUT_MS,
      what: 'the lone invisible viewer to receive its own awareness state back',
      detail: () => tapAlone.awarenessEntries
    })
    assert.deepEqual([...tapAlone.awarenessClients], [alone.clientID], 'the lone viewer only ever hears about itself')

    raw.close()
    rawLate.close()
    await stopAndCheckLogs(server, kit, t)
  })
}

// ---- 4. refused handshakes --------------------------------------------------------------------

atest('no token, a garbage token, a forged token and another document\'s token are refused with 401 / 401 / 401 / 403; connected writers are unaffected', async (s, t) => {
  const kit = await AuthKit.create(s)
  const server = await authServer(s, kit, { extraArgs: ['--token-cookie', 'tandem_token'] })
  const room = 'notes/shared'
  const writerToken = await kit.mint({ docs: ['notes/*'], rights: 'write', sub: 'writer' })
  const a = await s.syncedClient(STACKS.v3, server, room, { params: { token: writerToken }, label: 'v3 writer A' })
  const b = await s.syncedClient(STACKS.v1, server, room, { params: { token: writerToken }, label: 'v1 writer B' })
  const lifeA = countDisconnects(a)
  const lifeB = countDisconnects(b)
  a.text.insert(0, 'before. ')
  b.map.set('before', true)
  await waitConverged([a, b], { what: 'writers to converge before the refused attempts' })

  // The raw client works: a valid token is accepted from ?token=, Authorization: Bearer and the cookie.
  const accepted = [
    ['?token=', roomUrl(server, room, writerToken), {}],
    ['Authorization: Bearer', roomUrl(server, room), { Authorization: `Bearer ${writerToken}` }],
    ['cookie', roomUrl(server, room), { Cookie: `other=1; tandem_token=${writerToken}` }]
  ]
  for (const [how, url, headers] of accepted) {
    const outcome = await handshake(url, { headers })
    assert.equal(outcome.status, 101, `a valid token in ${how} is accepted (got ${outcome.status} ${outcome.body ?? ''})`)
    outcome.ws.close()
  }

  // The refusals, before any upgrade.
  const garbage = kit.remember(`garbage-${randomBytes(12).toString('hex')}`)
  const otherKit = await AuthKit.create(s)
  const forged = await otherKit.mint({ docs: ['*'], rights: 'write,admin', sub: 'mallory' })
  kit.remember(forged)
  const otherDoc = await kit.mint({ docs: ['other/*', 'notes'], rights: 'write', sub: 'elsewhere' })
  const refused = [
    ['no token', roomUrl(server, room), {}, 401],
    ['a garbage token', roomUrl(server, room, garbage), {}, 401],
    ['a token signed with another secret', roomUrl(server, room, forged), {}, 401],
    ['a garbage Bearer token', roomUrl(server, room), { Authorization: `Bearer ${garbage}` }, 401],
    ['a token for other documents', roomUrl(server, room, otherDoc), {}, 403]
  ]
  for (const [what, url, headers, status] of refused) {
    const outcome = await handshake(url, { headers })
    assert.equal(outcome.status, status, `${what}: HTTP ${status} (got ${outcome.status}: ${outcome.body ?? 'upgraded'})`)
    if (status === 401) assert.equal(outcome.headers['www-authenticate'], 'Bearer', `${what}: 401 names the Bearer scheme`)
    assert.ok(!outcome.body.includes(garbage) && !outcome.body.includes(forged) && !outcome.body.includes(otherDoc), `${what}: the response does not echo the token`)
    t.diagnostic(`${what}: ${outcome.status} ${JSON.stringify(outcome.body)}`)
  }

  // A real y-websocket client with the other document's token never gets in (a browser's
  // WebSocket cannot see the status: to the client it is a failed connection, retried).
  const intruder = s.client(STACKS.v3, server, room, { params: { token: otherDoc }, label: 'v3 client with another document\'s token' })
  let errors = 0
  intruder.provider.on('connection-error', () => { errors++ })
  await waitFor(() => errors >= 2, { what: 'the intruder\'s first two connection attempts to fail' })
  assert.equal(intruder.provider.synced, false)
  assert.equal(intruder.provider.wsconnected, false)
  assert.equal(intruder.text.length, 0, 'the intruder received nothing')
  intruder.destroy()

  // The writers never noticed: still connected, and they still converge.
  a.text.insert(a.text.length, 'after.')
  b.map.set('after', true)
  const after = await waitConverged([a, b], { what: 'writers to converge after the refused attempts' })
  assert.equal(after.doc.text, 'before. after.')
  assert.deepEqual(after.map, { before: true, after: true })
  assert.equal(lifeA.disconnects + lifeB.disconnects, 0, 'no writer was disconnected')

  await stopAndCheckLogs(server, kit, t)
})

// ---- 5. expiry --------------------------------------------------------------------------------

atest('a token expiring while connected closes the connection with 4401; y-websocket 3.x stops, 1.x retries and is refused 401', async (s, t) => {
  const kit = await AuthKit.create(s)
  const server = await authServer(s, kit)
  const room = 'notes/expiring'
  const longToken = await kit.mint({ docs: ['notes/*'], rights: 'write', sub: 'stays' })
  const shortToken = await kit.mint({ docs: ['notes/*'], rights: 'write', ttl: '3s', sub: 'leaves' })

  const stays = await s.syncedClient(STACKS.v3, server, room, { params: { token: longToken }, label: 'v3 long-lived writer' })
  const v3 = s.client(STACKS.v3, server, room, { params: { token: shortToken }, label: 'v3 expiring writer' })
  const v1 = s.client(STACKS.v1, server, room, { params: { token: shortToken }, label: 'v1 expiring writer' })
  const closes = { v3: [], v1: [] }
  let v3Closed = null
  let v1Errors = 0
  v3.provider.on('connection-close', (event) => { if (event) closes.v3.push(event.code) })
  v3.provider.on('closed', (event) => { v3Closed = event })
  v1.provider.on('connection-close', (event) => { if (event) closes.v1.push(event.code) })
  await v3.synced()
  await v1.synced()
  v3.text.insert(0, 'from v3 ')
  v1.text.insert(0, 'from v1 ')
  await waitConverged([stays, v3, v1], { what: 'all three to converge while the short tokens are valid' })

  await waitFor(() => closes.v3.length > 0 && closes.v1.length > 0, {
    timeout: 10_000,
    what: 'both expiring clients to be closed by the server (token ttl 3s)',
    detail: () => closes
  })
  assert.equal(closes.v3[0], 4401)
  assert.equal(closes.v1[0], 4401)
  // 3.x treats 44xx as final: it emits 'closed' and stops reconnecting.
  await waitFor(() => v3Closed !== null, { what: 'y-websocket 3.x to emit closed' })
  assert.deepEqual(v3Closed, { code: 4401, reason: 'token expired' })
  assert.equal(v3.provider.shouldConnect, false, '3.x does not reconnect after 4401')
  // 1.x reconnects with the same (now expired) token and is refused before the upgrade.
  v1.provider.on('connection-error', () => { v1Errors++ })
  await waitFor(() => v1Errors >= 1, { what: 'y-websocket 1.x to retry and fail' })
  const outcome = await handshake(roomUrl(server, room, shortToken))
  assert.equal(outcome.status, 401, `an expired token is refused with 401 (got ${outcome.status})`)
  t.diagnostic(`expired token: ${outcome.status} ${JSON.stringify(outcome.body)}; 3.x closed: ${JSON.stringify(v3Closed)}; 1.x close codes: ${JSON.stringify(closes.v1)}`)
  assert.equal(v1.provider.wsconnected, false)
  v1.destroy()

  // The long-lived writer is unaffected and has both edits.
  assert.equal(stays.provider.wsconnected, true)
  stays.text.insert(stays.text.length, 'still here')
  await waitFor(() => textOf(stays).endsWith('still here'), { what: 'local edit' })
  const fresh = await s.syncedClient(STACKS.v3, server, room, { params: { token: longToken }, label: 'v3 fresh client' })
  await waitConverged([stays, fresh], { what: 'the long-lived writer and a fresh client to converge' })
  assert.ok(textOf(fresh).includes('from v3 ') && textOf(fresh).includes('from v1 ') && textOf(fresh).endsWith('still here'))

  await stopAndCheckLogs(server, kit, t)
})

// ---- 6. expiry, to the second -----------------------------------------------------------------

/** A Yjs update (from a fresh document) inserting `text` into the Y.Text "text". */
function textUpdate (text) {
  const doc = new STACKS.v3.Y.Doc()
  doc.getText('text').insert(0, text)
  const update = STACKS.v3.Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return update
}

/** The text of the server's own document, read through a raw sync step 1 with `token`. */
async function serverText (server, room, token) {
  const doc = new STACKS.v3.Y.Doc()
  STACKS.v3.Y.applyUpdate(doc, await fetchServerState(roomUrl(server, room, token)))
  const text = doc.getText('text').toString()
  doc.destroy()
  return text
}

// RFC 7519 4.1.4: the current time MUST be before `exp`. tandem refuses a token from the second
// its `exp` names (`now >= exp`, no leeway), and an open connection checks its expiry before
// handling each frame, so a frame read before the connection's 4401 timer fires is not applied
// either. Nothing here depends on timing luck: the connections are opened and have written
// 2 to 3 s before `exp` (ttl 3s, whole seconds), and everything after `exp` is refused whichever
// comes first, the server's timer or the client's frame.
atest('a token is refused from the second its exp claim names; connections writing at their expiry are closed with 4401 and the writes are not applied', async (s, t) => {
  const kit = await AuthKit.create(s)
  const server = await authServer(s, kit)
  const room = 'notes/expired'
  const token = await kit.mint({ docs: ['notes/*'], rights: 'write', ttl: '3s', sub: 'late' })
  const readerToken = await kit.mint({ docs: ['notes/*'], rights: 'read', sub: 'reader' })
  const expMs = tokenClaims(token).exp * 1000

  // Two connections with the token, opened well before it expires: `early` writes now and again
  // at expiry; `silent` sends its very first frame at expiry.
  const early = await RawPeer.open(roomUrl(server, room, token), { label: 'writer that wrote before expiry' })
  const silent = await RawPeer.open(roomUrl(server, room, token), { label: 'writer silent until expiry' })
  early.send(updateMessage(textUpdate('written before expiry. ')))
  // The server applied it: it sends every applied update to all peers, the sender included.
  await waitFor(() => early.updates.length >= 1 && silent.updates.length >= 1, { what: 'the pre-expiry write to be applied and broadcast' })
  const margin = expMs - Date.now()
  assert.ok(margin > 0, `the test's premise: both connections were open and the first write applied before exp (${margin} ms before)`)
  assert.equal(await serverText(server, room, readerToken), 'written before expiry. ')

  // The second `exp` names begins: from now on the token is expired.
  await waitFor(() => Date.now() >= expMs, { timeout: margin + 2_000, interval: 5, what: 'the second the token\'s exp names to begin' })
  const sentAt = Date.now() - expMs
  early.send(updateMessage(textUpdate('EARLY WROTE AFTER EXPIRY ')))
  silent.send(updateMessage(textUpdate('SILENT WROTE AFTER EXPIRY ')))
  const handshakeAt = Date.now() - expMs
  const refused = await handshake(roomUrl(server, room, token))
  if (refused.status === 101) refused.ws.close()
  assert.equal(refused.status, 401, `a handshake ${handshakeAt} ms into the exp second is refused with 401 (got ${refused.status} ${refused.body ?? 'upgraded'})`)
  assert.equal(refused.headers['www-authenticate'], 'Bearer')

  // Both connections are closed with 4401 ...
  await waitFor(() => early.closeEvent && silent.closeEvent, {
    timeout: 5_000,
    what: 'both connections to be closed by the server',
    detail: () => ({ early: early.closeEvent, silent: silent.closeEvent })
  })
  assert.deepEqual(early.closeEvent, { code: 4401, reason: 'token expired' })
  assert.deepEqual(silent.closeEvent, { code: 4401, reason: 'token expired' })
  // ... and neither write was applied: the server's document is as before, and neither
  // connection was sent another update (an applied one is sent to every peer).
  assert.equal(await serverText(server, room, readerToken), 'written before expiry. ', 'the writes sent at expiry were not applied')
  assert.equal(early.updates.length, 1, 'no update after the pre-expiry one was broadcast')
  assert.equal(silent.updates.length, 1, 'no update after the pre-expiry one was broadcast')
  // A y-websocket client with a valid token agrees.
  const freshToken = await kit.mint({ docs: ['notes/*'], rights: 'read', sub: 'fresh' })
  const fresh = await s.syncedClient(STACKS.v3, server, room, { params: { token: freshToken }, label: 'v3 fresh reader' })
  assert.equal(textOf(fresh), 'written before expiry. ')

  t.diagnostic(`writes sent ${sentAt} ms and handshake started ${handshakeAt} ms into the exp second; handshake: ${refused.status} ${JSON.stringify(refused.body)}; closes: ${JSON.stringify([early.closeEvent, silent.closeEvent])}`)
  await stopAndCheckLogs(server, kit, t)
})
