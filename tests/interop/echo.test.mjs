// The server echoes document updates and awareness updates to every peer, the sender included.
// y-websocket clients rely on it: a client that receives no message for 30 s closes and reopens
// its connection, and a client alone in a room only receives the echo of its own awareness
// renewals (every 15 s).

import assert from 'node:assert/strict'

import { itest, waitFor } from './lib/harness.mjs'
import { STACKS } from './lib/stack.mjs'

// y-websocket message types (first varuint) and sync message types (second varuint).
const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const SYNC_UPDATE = 2

/** Minimal lib0 decoder: varuint, varuint-prefixed bytes and strings. */
class Decoder {
  constructor (bytes) { this.bytes = bytes; this.pos = 0 }
  uint () {
    let num = 0
    let mult = 1
    for (;;) {
      const b = this.bytes[this.pos++]
      num += (b & 0x7f) * mult
      mult *= 128
      if (b < 0x80) return num
    }
  }
  bytesField () { const n = this.uint(); const out = this.bytes.subarray(this.pos, this.pos + n); this.pos += n; return out }
  string () { return new TextDecoder().decode(this.bytesField()) }
}

/** Records the decoded frames the provider's current socket receives. */
function recordFrames (client) {
  const frames = { updates: [], awareness: [] }
  client.provider.ws.on('message', (data) => {
    const d = new Decoder(new Uint8Array(data))
    const type = d.uint()
    if (type === MESSAGE_SYNC && d.uint() === SYNC_UPDATE) {
      frames.updates.push(d.bytesField())
    } else if (type === MESSAGE_AWARENESS) {
      const u = new Decoder(d.bytesField())
      const n = u.uint()
      for (let i = 0; i < n; i++) frames.awareness.push({ clientID: u.uint(), clock: u.uint(), state: JSON.parse(u.string()) })
    }
  })
  return frames
}

for (const v of ['v1', 'v3']) {
  itest(`${v}: a client alone in a room gets its own update and awareness back`, async (s) => {
    const server = await s.server()
    const a = await s.syncedClient(STACKS[v], server, 'echo')
    const frames = recordFrames(a)

    a.text.insert(0, 'hello')
    await waitFor(() => frames.updates.length >= 1, { timeout: 5_000, what: 'the echo of our own update' })
    const replica = new a.Y.Doc()
    for (const u of frames.updates) a.Y.applyUpdate(replica, u)
    assert.equal(replica.getText('text').toString(), 'hello', 'the echoed update is our edit')
    replica.destroy()

    a.awareness.setLocalState({ user: { name: 'A' } })
    await waitFor(() => frames.awareness.some((e) => e.clientID === a.clientID && e.state?.user?.name === 'A'), {
      timeout: 5_000,
      what: 'the echo of our own awareness update',
      detail: () => frames.awareness
    })
    assert.equal(a.provider.wsconnected, true)
  })
}
