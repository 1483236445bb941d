// Helpers for events.test.mjs: Tandem's custom events on the y-websocket socket, spoken by real
// y-websocket providers the way an application would: a handler for message type 5 in the
// provider's `messageHandlers` table and `provider.ws.send(bytes)` to send.
//
// Wire format (outer message type 5, lib0 encoding): `varUint(5) · varString(json)`.
//   client -> server: `{"type": string, "data": any}` (emit) or `{"since": n}` (replay after n)
//   server -> client: `{"seq", "type", "data", "from", "at"}` (an event), `{"ack": n}` (the seq
//                     given to this connection's own event), `{"gap": {"from", "to"}}`
// Only connections opened with `?events=1` are ever sent one.
//
// The codec is lib0's, the very module instance y-websocket 1.x, 2.x and 3.x use (00-sanity
// checks that they all resolve one lib0).

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

/** The outer message type of custom events. */
export const MESSAGE_EVENT = 5

/** `varUint(5) · varString(JSON.stringify(message))`. */
export function eventFrame (message) {
  return eventFrameFromJson(JSON.stringify(message))
}

/** `varUint(5) · varString(json)`, `json` sent as is (e.g. malformed on purpose). */
export function eventFrameFromJson (json) {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MESSAGE_EVENT)
  encoding.writeVarString(encoder, json)
  return encoding.toUint8Array(encoder)
}

/** The y-websocket params that opt a connection in (plus a token when given). */
export function eventParams (token) {
  return token ? { events: '1', token } : { events: '1' }
}

let tapSeq = 0

/**
 * Custom events for one harness `Client` (a real y-websocket provider): installs the type-5
 * handler in the provider's own `messageHandlers` table (each major copies the module-level table
 * into the instance in its constructor, and its `readMessage` dispatches through
 * `provider.messageHandlers[type]`), records every event message received, in order, and sends
 * event messages on the provider's current socket. Also records every close code the provider's
 * sockets report (`connection-close`).
 *
 * Create it right after the client, before its socket opens, so no message is missed.
 */
export class EventTap {
  /**
   * @param {import('./harness.mjs').Client} client
   * @param {{ resume?: boolean }} [opts]  `resume`: on every (re)connection, ask for the events
   *   after the newest seq seen (`{"since": lastSeq}`), as an application would
   */
  constructor (client, { resume = false } = {}) {
    this.client = client
    this.provider = client.provider
    this.label = client.label
    this.id = ++tapSeq
    /** @type {Array<{ msg: any, json: string, socket: any, at: number }>} every event message received, in order */
    this.received = []
    /** Messages that did not parse: must stay empty. */
    this.errors = []
    /** `code` of every `connection-close` the provider emitted (null: closed locally). */
    this.closes = []
    /** Every `{"since": n}` this tap sent, in order. */
    this.sinceSent = []
    const provider = this.provider
    if (!Array.isArray(provider.messageHandlers)) {
      throw new Error(`${this.label}: provider.messageHandlers is not an array`)
    }
    if (provider.messageHandlers[MESSAGE_EVENT] !== undefined) {
      throw new Error(`${this.label}: y-websocket already has a handler for message type ${MESSAGE_EVENT}`)
    }
    provider.messageHandlers[MESSAGE_EVENT] = (encoder, decoder, p) => {
      // Nothing is written to `encoder`: y-websocket sends it back only when it is not empty.
      const json = decoding.readVarString(decoder)
      try {
        this.received.push({ msg: JSON.parse(json), json, socket: p.ws, at: Date.now() })
      } catch (err) {
        this.errors.push(`${json}: ${err}`)
      }
    }
    provider.on('connection-close', (event) => { this.closes.push(event ? event.code : null) })
    if (resume) {
      provider.on('status', ({ status }) => {
        if (status === 'connected') this.since(this.lastSeq)
      })
    }
  }

  /** Every event `{seq, type, data, from, at}` received, in order. */
  get events () { return this.received.map((r) => r.msg).filter((m) => 'seq' in m) }
  /** Every ack's seq, in order. */
  get acks () { return this.received.map((r) => r.msg).filter((m) => 'ack' in m).map((m) => m.ack) }
  /** Every gap marker `{from, to}`, in order. */
  get gaps () { return this.received.map((r) => r.msg).filter((m) => 'gap' in m).map((m) => m.gap) }
  /** The newest seq this connection has seen: an event's or an ack's. */
  get lastSeq () {
    return Math.max(0, ...this.events.map((e) => e.seq), ...this.acks)
  }

  /** Sends bytes on the provider's socket; throws unless it is connected and open. */
  send (bytes) {
    const ws = this.provider.ws
    if (!this.provider.wsconnected || !ws || ws.readyState !== ws.OPEN) {
      throw new Error(`${this.label}: not connected (wsconnected=${this.provider.wsconnected}, readyState=${ws?.readyState})`)
    }
    ws.send(bytes)
  }

  /** Emits `{type, data}` (exactly these keys; `data` left out when undefined). */
  emit (type, data) {
    this.send(eventFrame(data === undefined ? { type } : { type, data }))
  }

  /** Asks for every event after `seq` still in the history. */
  since (seq) {
    this.sinceSent.push(seq)
    this.send(eventFrame({ since: seq }))
  }

  /** A short description for `waitFor` details. */
  describe () {
    return { label: this.label, received: this.received.map((r) => r.json.length > 200 ? `${r.json.slice(0, 200)}...` : r.json), errors: this.errors, closes: this.closes, sinceSent: this.sinceSent }
  }
}

/**
 * Records the outer message type of every message a y-websocket provider dispatches, including
 * types it has no handler for (y-websocket then console.errors "Unable to compute message" and
 * drops it): the provider's per-instance `messageHandlers` table is replaced by a Proxy that notes
 * each numeric lookup. `readMessage` looks the type of every received frame up there exactly once,
 * so `types` lists every frame the provider received, in order, whatever its type.
 * @returns {{ types: number[], count: (type: number) => number }}
 */
export function recordMessageTypes (provider) {
  const seen = { types: [], count (type) { return this.types.filter((t) => t === type).length } }
  provider.messageHandlers = new Proxy(provider.messageHandlers, {
    get (target, prop, receiver) {
      if (typeof prop === 'string' && /^\d+$/.test(prop)) seen.types.push(Number(prop))
      return Reflect.get(target, prop, receiver)
    }
  })
  return seen
}
