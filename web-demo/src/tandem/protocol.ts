// The bits of the y-websocket wire format the client layer looks at (y-websocket itself does
// the syncing): message types, sync sub-types, and Tandem's custom event message.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'

/** y-protocols outer message types, plus Tandem's custom events (5). */
export const MessageType = {
  Sync: 0,
  Awareness: 1,
  Auth: 2,
  QueryAwareness: 3,
  Event: 5
} as const

const SyncStep1 = 0
const SyncStep2 = 1
const SyncUpdate = 2

/** What one WebSocket frame says, as far as the client layer cares. */
export type Frame =
  | { kind: 'sync-step1' }
  | { kind: 'sync-step2', update: Uint8Array }
  | { kind: 'update', update: Uint8Array }
  | { kind: 'awareness' }
  | { kind: 'event', json: string }
  | { kind: 'other' }

/**
 * Reads the first message of a frame (servers for y-websocket send one message per frame).
 * Anything it cannot read is `other`: y-websocket decides what to do with it.
 */
export function readFrame (data: Uint8Array): Frame {
  try {
    const decoder = decoding.createDecoder(data)
    const type = decoding.readVarUint(decoder)
    if (type === MessageType.Sync) {
      const sub = decoding.readVarUint(decoder)
      if (sub === SyncStep1) return { kind: 'sync-step1' }
      if (sub === SyncStep2) return { kind: 'sync-step2', update: decoding.readVarUint8Array(decoder) }
      if (sub === SyncUpdate) return { kind: 'update', update: decoding.readVarUint8Array(decoder) }
      return { kind: 'other' }
    }
    if (type === MessageType.Awareness) return { kind: 'awareness' }
    if (type === MessageType.Event) return { kind: 'event', json: decoding.readVarString(decoder) }
    return { kind: 'other' }
  } catch {
    return { kind: 'other' }
  }
}

/** `varUint(5) · varString(json)`: a custom event message. */
export function encodeEvent (message: unknown): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Event)
  encoding.writeVarString(encoder, JSON.stringify(message))
  return encoding.toUint8Array(encoder)
}

/** Sync step 1 with `doc`'s state vector: the server answers with what `doc` lacks. */
export function encodeSyncStep1 (doc: Y.Doc): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Sync)
  encoding.writeVarUint(encoder, SyncStep1)
  encoding.writeVarUint8Array(encoder, Y.encodeStateVector(doc))
  return encoding.toUint8Array(encoder)
}

/**
 * A document name as a URL path, each `/`-separated part percent-encoded: Tandem decodes the
 * path back to the exact name, so names may hold `/`, spaces, `?`, `#` or anything else.
 */
export function documentPath (name: string): string {
  return name.split('/').map(encodeURIComponent).join('/')
}

/** The y-websocket server URL (`ws://host/ws`) of the page's own origin. */
export function defaultServerUrl (location: { protocol: string, host: string }): string {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`
}
