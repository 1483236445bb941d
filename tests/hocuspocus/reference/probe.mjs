// What the reference @hocuspocus/server (v4 and v3) does in the cases where Tandem was seen to
// behave differently (tests/hocuspocus/README.md, "Differences"). Needs Node 22: `npm run probe`.
// Prints one line per case and server major; it asserts nothing about Tandem.

import * as Y from 'yjs'
import { build, describe, providerFixture, rawClient, startReference, waitFor } from './lib.mjs'

const NAME = 'my-doc'
const kinds = (frames) => frames.map((f) => { const d = describe(f); return d.kind + (d.applied !== undefined ? `(${d.applied})` : '') + (d.text !== undefined ? `(${JSON.stringify(d.text)})` : '') })
/** Waits until `client` has gone quiet for a round trip: a stateless echo comes back. */
async function settle (client, address = NAME) {
  const marker = `marker-${Math.random()}`
  client.send(build(address, ['uint', 5], ['string', marker]))
  await waitFor(() => client.frames.slice(client.seen).some((f) => describe(f).text === marker), { what: 'the marker echo' })
  const rest = client.rest()
  return rest.filter((f) => describe(f).text !== marker)
}

async function probe (major) {
  const statelessSeen = []
  const { server, url, version } = await startReference(major, {
    async onAuthenticate ({ token, connectionConfig }) {
      if (token === 'readonly-token') { connectionConfig.readOnly = true; return }
      if (token !== 'secret-token') throw new Error('no')
    },
    async onStateless ({ payload, connection }) {
      statelessSeen.push(payload)
      connection.sendStateless(payload) // the settle() marker echo
    }
  })
  const log = (what, result) => console.log(`${major} (@hocuspocus/server ${version}) | ${what} | ${result}`)
  const auth = (token) => build(NAME, ['uint', 2], ['uint', 0], ['string', token], ['string', '4.8.0'])

  // A writer puts "hello world" in, then deletes " world": the document has a delete set.
  const w = await rawClient(url)
  w.send(auth('secret-token'))
  await w.next(1)
  const writerDoc = new Y.Doc()
  writerDoc.clientID = 7
  writerDoc.getText('text').insert(0, 'hello world')
  writerDoc.getText('text').delete(5, 6)
  w.send(build(NAME, ['uint', 0], ['uint', 2], ['bytes', Y.encodeStateAsUpdate(writerDoc)]))
  await settle(w)

  // 1. A read-only client that already has all of it answers the server's SyncStep1 with a
  //    SyncStep2 that carries only the (known) delete set.
  const r = await rawClient(url)
  r.send(auth('readonly-token'))
  await r.next(1)
  const step2 = Y.encodeStateAsUpdate(writerDoc, Y.encodeStateVector(writerDoc))
  r.send(build(NAME, ['uint', 0], ['uint', 1], ['bytes', step2]))
  log(`read-only SyncStep2 carrying only a known delete set (${Buffer.from(step2).toString('hex')})`, kinds(await settle(r)).join(' '))

  // 2. A client SyncStep1 on an established session (what forceSync / forceSyncInterval send).
  w.send(providerFixture('v4', 'sync-step1'))
  log('SyncStep1 on an established session', kinds(await settle(w)).join(' '))

  // 3. QueryAwareness from a client.
  w.send(build(NAME, ['uint', 3]))
  log('client QueryAwareness', kinds(await settle(w)).join(' ') || '(no reply)')

  // 4. A message type the server does not expect from a client (4, SyncReply; 11, unknown).
  for (const type of [4, 11]) {
    w.send(build(NAME, ['uint', type], ['uint', 0], ['bytes', new Uint8Array([0])]))
    let result
    try { result = kinds(await settle(w)).join(' ') || '(nothing)'; result += `; socket ${w.closed ? `closed ${JSON.stringify(w.closed)}` : 'open'}` } catch (e) { result = `no marker echo; socket ${JSON.stringify(w.closed)}` }
    log(`client message type ${type}`, result)
  }

  // 5. Stateless from a read-only session reaches onStateless.
  const before = statelessSeen.length
  r.send(build(NAME, ['uint', 5], ['string', 'from a reader']))
  await settle(r)
  log('stateless from a read-only session', statelessSeen.slice(before).includes('from a reader') ? 'reaches onStateless' : 'dropped')

  // 6. Stateless relay: is a client's stateless message delivered to the document's other
  //    connections without a hook doing it?
  const other = await rawClient(url)
  other.send(auth('secret-token'))
  await other.next(1)
  r.send(build(NAME, ['uint', 5], ['string', 'for everyone?']))
  await settle(r)
  const otherFrames = await settle(other)
  log('stateless to other connections (hook only echoes to the sender)', kinds(otherFrames).filter((k) => k.startsWith('stateless')).join(' ') || 'not relayed')

  // 7. Auth again on the same socket after a refusal.
  const c = await rawClient(url)
  c.send(auth('wrong'))
  await c.next(1)
  c.send(auth('secret-token'))
  let retry
  try { retry = kinds(await c.next(1, 'an answer to the retry')).join(' ') } catch { retry = '(no answer)' }
  log('Auth retry after PermissionDenied on the same socket', retry)

  for (const client of [w, r, other, c]) await client.close()
  await server.destroy()
}

for (const major of ['v4', 'v3']) await probe(major)
process.exit(0)
