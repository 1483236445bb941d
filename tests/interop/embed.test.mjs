// Tandem embedded in an app: the example at crates/tandem-server/examples/embed.rs (binary
// target/debug/examples/embed, next to TANDEM_BIN), an axum app with its own routes and Tandem
// nested at /collab. Its own `Authorizer` reads the app's session cookie instead of tokens:
// `session=alice-session` may write, `session=bob-session` may only read, and only `notes/...`
// documents are shared. `POST /notes/{id}/append` appends its body to the note's Y.Text "text"
// server-side (`Document::transact`), and an `on_change` hook logs `note changed`.
//
// The real y-websocket clients connect to ws://HOST:PORT/collab/ws/notes/1 and, being browser-less,
// send the cookie the way a browser would for the app's origin: y-websocket's `WebSocketPolyfill`
// option gets a `ws` subclass that adds the `Cookie` header (lib/embed.mjs).
//
// - a writer's and a read-only client's documents receive the app's server-side appends live and
//   in order, merged with the writer's own typing; the read-only client's edits never reach the
//   server; the change hook logs;
// - refusals: no / unknown cookie 401, a document outside `notes/` 403 (WebSocket handshake), a
//   read-only or anonymous append 403 / 401; the app's own route and Tandem's /collab/healthz 200;
// - SIGTERM stops the app cleanly (exit 0 within 10 s, clients connected), and a restart on the
//   same data dir gives fresh clients every appended and typed character.
//
// The reference server (npm run test:reference) is not the example: skipped there.

import assert from 'node:assert/strict'

import { IS_REFERENCE_SERVER, captureConsoleWarn, handshake, tapProvider } from './lib/auth.mjs'
import { cookieWebSocket, request, startEmbed } from './lib/embed.mjs'
import { itest, waitConverged, waitFor } from './lib/harness.mjs'
import { STACKS } from './lib/stack.mjs'

const skip = IS_REFERENCE_SERVER && 'the reference server is not the embedding example'
const etest = (name, fn) => itest(name, fn, { skip })

const ALICE = 'session=alice-session'
const BOB = 'session=bob-session'
const ROOM = 'notes/1'

/** What y-websocket (all majors) console.warns when it receives a permission-denied auth message. */
const PERMISSION_WARNING = /^Permission denied to access /

const textOf = (c) => c.text.toString()

/** A y-websocket client of `app` sending `cookie` (none: the plain `ws` class). */
function client (s, stack, app, room, cookie, label) {
  return s.client(stack, app, room, { label, ...(cookie ? { WebSocketPolyfill: cookieWebSocket(cookie) } : {}) })
}

async function syncedClient (s, stack, app, room, cookie, label) {
  const c = client(s, stack, app, room, cookie, label)
  await c.synced()
  return c
}

/** `POST /notes/{id}/append` with `text` as the body, as the holder of `cookie` (none: anonymous). */
function append (app, id, text, cookie) {
  return request(`${app.httpUrl}/notes/${id}/append`, { method: 'POST', body: text, headers: cookie ? { Cookie: cookie } : {} })
}

/** Appends as alice and requires 200 with the note's new length (in characters) as the body. */
async function appendOk (app, id, text, expectedLength) {
  const res = await append(app, id, text, ALICE)
  assert.equal(res.status, 200, `alice's append of ${JSON.stringify(text)}: 200 (got ${res.status} ${res.body})`)
  assert.equal(res.body, String(expectedLength), `the app answers with the note's new length after appending ${JSON.stringify(text)}`)
}

function waitText (clients, expected, what) {
  return waitFor(() => clients.every((c) => textOf(c) === expected), {
    what: `${clients.map((c) => c.label).join(', ')} to have the text ${JSON.stringify(expected)} (${what})`,
    detail: () => Object.fromEntries(clients.map((c) => [c.label, textOf(c)]))
  })
}

// ---- 1. server-side edits, live ---------------------------------------------------------------

for (const v of ['v3', 'v2', 'v1']) {
  etest(`${v}: clients with the app's session cookie see its server-side appends live and in order; a read-only client's edits never reach the server; the change hook logs`, async (s, t) => {
    const app = await startEmbed(s)
    const warnings = captureConsoleWarn(PERMISSION_WARNING)
    try {
      const alice = await syncedClient(s, STACKS[v], app, ROOM, ALICE, `${v} alice (writer)`)
      const bob = client(s, STACKS[v], app, ROOM, BOB, `${v} bob (read-only)`)
      const tapBob = tapProvider(bob.provider)
      await bob.synced()
      assert.equal(alice.provider.url, `ws://${app.addr}/collab/ws/notes/1`)
      assert.equal(textOf(alice), '', 'a new note is empty')

      // The core: an append made by the app's handler reaches the connected clients live.
      await appendOk(app, '1', 'Hello', 5)
      await waitText([alice, bob], 'Hello', 'the first server-side append')
      await appendOk(app, '1', ', world', 12)
      await waitText([alice, bob], 'Hello, world', 'the second server-side append, after the first')

      // Alice types at the start while the app appends at the end: both land, in place.
      alice.text.insert(0, '> ')
      // Once bob has it, the server has it (bob only hears from the server).
      await waitText([bob], '> Hello, world', 'alice\'s typing, relayed by the server')
      await appendOk(app, '1', '!', 15)
      await waitText([alice, bob], '> Hello, world!', 'an append after alice\'s typing')

      // Bob (read-only) edits locally: refused (y-protocols permission denied, twice), never applied.
      bob.text.insert(0, 'BOB WAS HERE ')
      bob.map.set('bob', true)
      await waitFor(() => tapBob.denied.length >= 2, {
        what: 'bob to receive two permission-denied messages',
        detail: () => ({ denied: tapBob.denied, kinds: tapBob.kinds })
      })
      t.diagnostic(`${v} bob: permission denied ${JSON.stringify(tapBob.denied[0])}`)
      // The refusals were sent after the server dropped both updates: the next append is made on
      // a document without them. Both clients still receive it live.
      await appendOk(app, '1', ' More.', 21)
      await waitText([alice], '> Hello, world! More.', 'an append after bob\'s refused edits')
      await waitText([bob], 'BOB WAS HERE > Hello, world! More.', 'bob keeps his local edit and gets the append')
      assert.equal(alice.map.has('bob'), false, 'alice does not have bob\'s map key')

      // A fresh client has exactly what the server has: no trace of bob.
      const fresh = await syncedClient(s, STACKS.v3, app, ROOM, ALICE, 'v3 fresh alice')
      assert.equal(textOf(fresh), '> Hello, world! More.')
      assert.equal(fresh.map.has('bob'), false)
      assert.ok(!fresh.knownClients().includes(bob.clientID), 'no operation of bob is on the server')
      await waitConverged([alice, fresh], { what: 'alice and a fresh client to converge' })
      assert.equal(bob.provider.wsconnected, true, 'bob stays connected')
      assert.equal(warnings.captured.length, tapBob.denied.length, 'y-websocket console.warned each refusal')

      // The app's change hook ran for the note (debounced: after 500 ms of quiet, at most 5 s late).
      const line = await waitFor(() => app.logLines().find((l) => /note changed.*\bdoc=notes\/1(\s|$)/.test(l)), {
        timeout: 10_000,
        what: 'the app to log `note changed` for notes/1 (its on_change hook)',
        detail: () => app.logLines().slice(-20)
      })
      t.diagnostic(`hook: ${line}`)
    } finally {
      warnings.restore()
    }
  })
}

// ---- 2. the app's own routes and refusals -----------------------------------------------------

etest('the app\'s routes and Tandem\'s share one server: GET / and /collab/healthz answer 200; no or unknown cookie 401, a document outside notes/ 403, bob\'s and anonymous appends 403 / 401', async (s, t) => {
  const app = await startEmbed(s)

  const home = await request(`${app.httpUrl}/`)
  assert.equal(home.status, 200)
  assert.match(home.body, /Tandem inside/, 'the app\'s own handler answers /')
  const health = await request(`${app.httpUrl}/collab/healthz`)
  assert.equal(health.status, 200, `GET /collab/healthz: 200 (got ${health.status} ${health.body})`)
  // Tandem lives under /collab only.
  const outside = await handshake(`ws://${app.addr}/ws/notes/1`, { headers: { Cookie: ALICE } })
  if (outside.status === 101) outside.ws.close()
  assert.equal(outside.status, 404, `/ws/notes/1 (outside /collab) is not Tandem's: 404 (got ${outside.status})`)

  // WebSocket handshakes, decided by the app's Authorizer before the upgrade.
  const url = (doc) => `${app.wsUrl}/${doc}`
  const cases = [
    ['no cookie', url(ROOM), {}, 401],
    ['an unknown session', url(ROOM), { Cookie: 'session=mallory-session' }, 401],
    ['another cookie only', url(ROOM), { Cookie: 'theme=dark' }, 401],
    ['alice, a document outside notes/', url('other'), { Cookie: ALICE }, 403],
    ['bob, a document outside notes/', url('other'), { Cookie: BOB }, 403],
    ['alice, `notes` itself', url('notes'), { Cookie: ALICE }, 403],
    ['alice, notes/1', url(ROOM), { Cookie: ALICE }, 101],
    ['alice among other cookies', url(ROOM), { Cookie: `theme=dark; ${ALICE}` }, 101],
    ['bob, notes/1', url(ROOM), { Cookie: BOB }, 101]
  ]
  for (const [what, u, headers, status] of cases) {
    const outcome = await handshake(u, { headers })
    if (outcome.status === 101) outcome.ws.close()
    assert.equal(outcome.status, status, `${what}: ${status} (got ${outcome.status} ${outcome.body ?? 'upgraded'})`)
    t.diagnostic(`WebSocket, ${what}: ${outcome.status} ${JSON.stringify(outcome.body ?? '')}`)
  }

  // A real y-websocket client without the cookie never gets in (to it, a failed connection, retried).
  const anonymous = client(s, STACKS.v3, app, ROOM, null, 'v3 client without cookie')
  let errors = 0
  anonymous.provider.on('connection-error', () => { errors++ })
  await waitFor(() => errors >= 2, { what: 'the cookie-less client\'s first two connection attempts to fail' })
  assert.equal(anonymous.provider.synced, false)
  anonymous.destroy()

  // Appends: only a writer's session may.
  const refusedAppends = [
    ['bob (read-only)', BOB, 403],
    ['no cookie', null, 401],
    ['an unknown session', 'session=mallory-session', 401]
  ]
  for (const [what, cookie, status] of refusedAppends) {
    const res = await append(app, '1', `appended by ${what}`, cookie)
    assert.equal(res.status, status, `POST /notes/1/append, ${what}: ${status} (got ${res.status} ${res.body})`)
    t.diagnostic(`POST, ${what}: ${res.status} ${JSON.stringify(res.body)}`)
  }
  // Nothing was appended: the first real append makes the note exactly its own text.
  await appendOk(app, '1', 'only this', 9)
  const fresh = await syncedClient(s, STACKS.v1, app, ROOM, BOB, 'v1 bob')
  assert.equal(textOf(fresh), 'only this')
})

// ---- 3. graceful stop and restart -------------------------------------------------------------

etest('SIGTERM stops the app (exit 0 within 10 s, clients connected); restarted on the same data dir, fresh clients have every appended and typed character', async (s, t) => {
  const app = await startEmbed(s)
  const v3 = await syncedClient(s, STACKS.v3, app, ROOM, ALICE, 'v3 alice')
  const v1 = await syncedClient(s, STACKS.v1, app, ROOM, BOB, 'v1 bob')
  await appendOk(app, '1', 'first. ', 7)
  await appendOk(app, '1', 'second. ', 15)
  await waitText([v3, v1], 'first. second. ', 'two appends')
  v3.text.insert(v3.text.length, 'typed. ')
  await waitText([v1], 'first. second. typed. ', 'alice\'s typing, relayed by the server')
  await appendOk(app, '1', 'third. ✓', 30)
  // Another note, appended to and never opened by a client.
  await appendOk(app, '2', 'note two', 8)
  const expected = 'first. second. typed. third. ✓'
  await waitText([v3, v1], expected, 'the third append')

  // The clients are still connected when the app gets SIGTERM; stop() requires exit 0 within 10 s.
  const stopped = await app.stop()
  t.diagnostic(`${app.label} exited with code 0 ${stopped.ms} ms after SIGTERM`)
  v3.destroy()
  v1.destroy()

  const again = await startEmbed(s, { dataDir: app.dataDir, label: `${app.label}'` })
  for (const [stack, cookie, label] of [[STACKS.v3, ALICE, 'v3 fresh alice'], [STACKS.v1, BOB, 'v1 fresh bob']]) {
    const fresh = await syncedClient(s, stack, again, ROOM, cookie, label)
    assert.equal(textOf(fresh), expected, `${label} after the restart`)
  }
  const two = await syncedClient(s, STACKS.v3, again, 'notes/2', BOB, 'v3 bob on notes/2')
  assert.equal(textOf(two), 'note two', 'a note only ever edited server-side survives the restart too')
  // The restarted app appends where the note left off.
  await appendOk(again, '1', ' after', expected.length + 6)
})
