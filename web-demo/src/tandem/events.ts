// Tandem's custom events (chat, notifications: messages that are not part of the document) on
// the y-websocket connection: `?events=1`, message type 5 carrying JSON.
//
// Sending: `{"type", "data"}`, answered `{"ack": seq}` in order. Receiving: `{"seq", "type",
// "data", "from", "at"}` from the other peers, and `{"gap": {"from", "to"}}` before a replay
// that misses events the server no longer keeps. On every (re)connection the channel asks for
// the events after the last one it has (`{"since": n}`; a newcomer gets the history), then
// sends what it could not send before. Delivery is at least once: an event whose ack was lost
// with the connection is sent again, so give `data` an `id` string and the channel drops the
// copies (everyone's channel does).

import { Value } from './store'

/** An event of the document's stream, or one of ours on its way. */
export interface TandemEvent<T = unknown> {
  /** The server's sequence number; `null` until the server acknowledged our own event. */
  seq: number | null
  type: string
  data: T
  /** Who sent it: the token's subject, or `peer:<id>`; `null` for our own. */
  from: string | null
  /** When the server received it (epoch ms); for our own pending ones, when we sent it. */
  at: number
  /** Sent by this page. */
  own: boolean
}

/** Events the server no longer had when we asked (a gap in the history). */
export interface EventGap {
  gap: { from: number, to: number }
}

export type EventEntry = TandemEvent | EventGap

export function isGap (entry: EventEntry): entry is EventGap {
  return 'gap' in entry
}

/** The most entries a channel keeps. */
export const DEFAULT_EVENT_LIMIT = 500

/** What the server says on the events channel. */
type ServerMessage =
  | { ack: number }
  | { gap: { from: number, to: number } }
  | { seq: number, type: string, data: unknown, from: string, at: number }

function parse (json: string): ServerMessage | null {
  try {
    const message = JSON.parse(json) as unknown
    if (typeof message !== 'object' || message === null) return null
    const m = message as Record<string, unknown>
    if (typeof m.ack === 'number') return { ack: m.ack }
    if (typeof m.gap === 'object' && m.gap !== null) {
      const gap = m.gap as Record<string, unknown>
      if (typeof gap.from === 'number' && typeof gap.to === 'number') return { gap: { from: gap.from, to: gap.to } }
      return null
    }
    if (typeof m.seq === 'number' && typeof m.type === 'string') {
      return {
        seq: m.seq,
        type: m.type,
        data: m.data ?? null,
        from: typeof m.from === 'string' ? m.from : '',
        at: typeof m.at === 'number' ? m.at : Date.now()
      }
    }
    return null
  } catch {
    return null
  }
}

/** The `id` of an event's data, when it has one. */
function idOf (data: unknown): string | null {
  if (typeof data === 'object' && data !== null && typeof (data as { id?: unknown }).id === 'string') {
    return (data as { id: string }).id
  }
  return null
}

export class EventChannel {
  /** Every event received and sent, oldest first, with gaps where history was lost. */
  readonly entries = new Value<EventEntry[]>([])
  /** The highest sequence number seen: the next connection asks for what follows it. */
  private lastSeq = 0
  private seenSeqs = new Set<number>()
  private seenIds = new Set<string>()
  /** Our events not yet sent on the current connection. */
  private outbox: TandemEvent[] = []
  /** Our events sent on the current connection, waiting for their acks in order. */
  private inFlight: TandemEvent[] = []
  private connected = false

  /**
   * @param send sends a frame's JSON on the open connection; returns false when there is none.
   */
  constructor (
    private readonly send: (message: unknown) => boolean,
    private readonly limit = DEFAULT_EVENT_LIMIT
  ) {}

  /** Sends an event to the document's other peers, now or once connected. */
  emit<T> (type: string, data: T): TandemEvent<T> {
    const event: TandemEvent<T> = { seq: null, type, data, from: null, at: Date.now(), own: true }
    const id = idOf(data)
    if (id !== null) this.seenIds.add(id)
    this.outbox.push(event)
    this.append(event)
    this.flush()
    return event
  }

  /** A connection opened: catch up, then send what waited. */
  opened (): void {
    this.connected = this.send({ since: this.lastSeq })
    this.flush()
  }

  /** The connection closed: whatever was not acknowledged goes out again on the next one. */
  closed (): void {
    this.connected = false
    this.outbox = [...this.inFlight, ...this.outbox]
    this.inFlight = []
  }

  /** A message arrived on the events channel. */
  receive (json: string): void {
    const message = parse(json)
    if (message === null) return
    if ('ack' in message) {
      const event = this.inFlight.shift()
      if (event === undefined) return
      this.seenSeqs.add(message.ack)
      this.lastSeq = Math.max(this.lastSeq, message.ack)
      this.replace(event, { ...event, seq: message.ack })
      return
    }
    if ('gap' in message) {
      this.append(message)
      return
    }
    if (this.seenSeqs.has(message.seq)) return
    this.seenSeqs.add(message.seq)
    this.lastSeq = Math.max(this.lastSeq, message.seq)
    const id = idOf(message.data)
    if (id !== null) {
      if (this.seenIds.has(id)) {
        this.settleCopy(id, message.seq)
        return
      }
      this.seenIds.add(id)
    }
    this.append({ ...message, own: false })
  }

  private flush (): void {
    if (!this.connected) return
    while (this.outbox.length > 0) {
      const event = this.outbox[0]
      if (!this.send({ type: event.type, data: event.data })) {
        this.connected = false
        return
      }
      this.outbox.shift()
      this.inFlight.push(event)
    }
  }

  /**
   * Another copy of an event we know arrived (a resend of ours that the server had received
   * before the connection dropped, or a copy someone else resent): give our pending one its
   * number if it has none.
   */
  private settleCopy (id: string, seq: number): void {
    const pending = this.entries.get().find((entry): entry is TandemEvent =>
      !isGap(entry) && entry.own && entry.seq === null && idOf(entry.data) === id)
    if (pending === undefined) return
    const settled = { ...pending, seq }
    this.replace(pending, settled)
    this.outbox = this.outbox.filter((event) => event !== settled)
  }

  private append (entry: EventEntry): void {
    const next = [...this.entries.get(), entry]
    this.entries.set(next.length > this.limit ? next.slice(next.length - this.limit) : next)
  }

  private replace (old: TandemEvent, next: TandemEvent): void {
    this.entries.set(this.entries.get().map((entry) => (entry === old ? next : entry)))
    const swap = (list: TandemEvent[]): void => {
      const i = list.indexOf(old)
      if (i >= 0) list[i] = next
    }
    swap(this.outbox)
    swap(this.inFlight)
  }
}
