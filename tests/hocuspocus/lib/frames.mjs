// Decoding of Hocuspocus frames (server -> provider) for assertions, from PROTOCOLS.md §4.

import * as decoding from 'lib0/decoding'

export const MessageType = Object.freeze({
  Sync: 0, Awareness: 1, Auth: 2, QueryAwareness: 3, Stateless: 5, BroadcastStateless: 6, CLOSE: 7, SyncStatus: 8, Ping: 9, Pong: 10
})

/**
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {{ address?: string, type: number, kind: string, [k: string]: any }}
 */
export function decodeServerFrame (data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
  if (bytes.length === 1 && bytes[0] === MessageType.Ping) return { type: 9, kind: 'ping' }
  const d = decoding.createDecoder(bytes)
  const address = decoding.readVarString(d)
  const type = decoding.readVarUint(d)
  const out = { address, type, kind: `type${type}`, hex: Buffer.from(bytes).toString('hex') }
  switch (type) {
    case MessageType.Sync: {
      const sub = decoding.readVarUint(d)
      out.kind = ['syncStep1', 'syncStep2', 'update'][sub] ?? `sync${sub}`
      out.payload = decoding.readVarUint8Array(d)
      break
    }
    case MessageType.Awareness: out.kind = 'awareness'; out.payload = decoding.readVarUint8Array(d); break
    case MessageType.Auth: {
      const sub = decoding.readVarUint(d)
      if (sub === 0) out.kind = 'tokenRequest'
      if (sub === 1) { out.kind = 'permissionDenied'; out.reason = decoding.readVarString(d) }
      if (sub === 2) { out.kind = 'authenticated'; out.scope = decoding.readVarString(d) }
      break
    }
    case MessageType.Stateless: out.kind = 'stateless'; out.payload = decoding.readVarString(d); break
    case MessageType.CLOSE: out.kind = 'close'; out.reason = decoding.readVarString(d); break
    case MessageType.SyncStatus: out.kind = 'syncStatus'; out.applied = decoding.readVarUint(d) === 1; break
  }
  return out
}
