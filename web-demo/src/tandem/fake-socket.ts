// A WebSocket stand-in for the unit tests: records what the client sends, and lets a test
// open, answer and close the connection by hand.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'

import { MessageType } from './protocol'

export class FakeWebSocket extends EventTarget {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  /** Every socket made, oldest first. */
  static sockets: FakeWebSocket[] = []

  readonly CONNECTING = 0
  readonly OPEN = 1
  readonly CLOSING = 2
  readonly CLOSED = 3
  readyState = 0
  binaryType = 'blob'
  /** Every frame the client sent. */
  readonly sent: Uint8Array[] = []
  onopen: ((event: Event) => void) | null = null
  onmessage: ((event: MessageEvent) => void) | null = null
  onclose: ((event: CloseEvent) => void) | null = null
  onerror: ((event: Event) => void) | null = null

  constructor (readonly url: string, readonly protocols?: string | string[]) {
    super()
    FakeWebSocket.sockets.push(this)
  }

  static latest (): FakeWebSocket {
    const socket = FakeWebSocket.sockets[FakeWebSocket.sockets.length - 1]
    if (socket === undefined) throw new Error('no socket was opened')
    return socket
  }

  send (data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open')
    this.sent.push(new Uint8Array(data))
  }

  close (): void {
    if (this.readyState === 3) return
    this.serverClose(1005)
  }

  /** The server accepted the connection. */
  open (): void {
    this.readyState = 1
    const event = new Event('open')
    this.dispatchEvent(event)
    this.onopen?.(event)
  }

  /** A frame from the server. */
  receive (frame: Uint8Array): void {
    const event = new MessageEvent('message', { data: frame.slice().buffer })
    this.dispatchEvent(event)
    this.onmessage?.(event)
  }

  /** The server (or the network) closed the connection. */
  serverClose (code: number, reason = ''): void {
    this.readyState = 3
    const event = new CloseEvent('close', { code, reason })
    this.dispatchEvent(event)
    this.onclose?.(event)
  }

  /** The frames sent, decoded to their kind (sync sub-type, awareness, event JSON). */
  sentKinds (): string[] {
    return this.sent.map(describe)
  }
}

/** A frame as a short string: `step1`, `step2`, `update`, `awareness`, `event {...}`. */
export function describe (frame: Uint8Array): string {
  const decoder = decoding.createDecoder(frame)
  const type = decoding.readVarUint(decoder)
  if (type === MessageType.Sync) return ['step1', 'step2', 'update'][decoding.readVarUint(decoder)] ?? 'sync?'
  if (type === MessageType.Awareness) return 'awareness'
  if (type === MessageType.Event) return `event ${decoding.readVarString(decoder)}`
  return `type ${type}`
}

/** Sync step 1 from a server whose document is `doc`. */
export function serverStep1 (doc: Y.Doc): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Sync)
  encoding.writeVarUint(encoder, 0)
  encoding.writeVarUint8Array(encoder, Y.encodeStateVector(doc))
  return encoding.toUint8Array(encoder)
}

/** Sync step 2 (or, with `sub` 2, an update) carrying `update`. */
export function serverSync (update: Uint8Array, sub: 1 | 2 = 1): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Sync)
  encoding.writeVarUint(encoder, sub)
  encoding.writeVarUint8Array(encoder, update)
  return encoding.toUint8Array(encoder)
}

/** A custom event message from the server. */
export function serverEvent (message: unknown): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Event)
  encoding.writeVarString(encoder, JSON.stringify(message))
  return encoding.toUint8Array(encoder)
}
