// Which local changes the server has, how long a round trip takes, how busy the document is.
//
// y-websocket sends changes and never hears back about them. The server answers a sync step 1
// from the document's own actor, after every message the connection sent before it, so the
// answer (a sync step 2) proves that everything sent before the step 1 has been applied. The
// tracker watches the frames of the connection and turns that into a count of local changes not
// yet on the server and a round-trip time.

import type { Frame } from './protocol'
import { shallowEqual, Value } from './store'

/** What the tracker knows about the document's traffic. */
export interface SyncState {
  /** Local changes (transactions) the server has not confirmed yet. */
  unsyncedChanges: number
  /** The last round trip to the server's document and back, in ms; `null` before the first. */
  latencyMs: number | null
  /** Document updates the server broadcast per second (everyone's, ours echoed included). */
  updatesPerSecond: number
  /** Document updates received since the page opened the document. */
  updatesReceived: number
  /** Document updates sent since the page opened the document. */
  updatesSent: number
}

/** How far back `updatesPerSecond` looks. */
export const RATE_WINDOW_MS = 5000

export class SyncTracker {
  readonly state: Value<SyncState>

  /** Local changes made so far; change `n` is the n-th. */
  private made = 0
  /** Every change up to this one was sent on the current connection, or confirmed before. */
  private sent = 0
  /** Every change up to this one is on the server. */
  private confirmed = 0
  /** Whether this connection sent its sync step 2, which carries every change the server lacked. */
  private caughtUp = false
  /** Step 1s sent and not answered yet, in order: what each proves once answered, and when. */
  private barriers: Array<{ upTo: number, at: number }> = []
  private received: number[] = []
  private updatesReceived = 0
  private updatesSent = 0
  private latencyMs: number | null = null

  constructor (private readonly now: () => number = () => performance.now()) {
    this.state = new Value(this.snapshot(), shallowEqual)
  }

  /** A change was made locally (call it before the provider sends it). */
  localChange (): void {
    this.made++
    this.publish()
  }

  /** A new connection opened: nothing is known about what it carried yet. */
  connectionOpened (): void {
    this.caughtUp = false
    this.sent = this.confirmed
    this.barriers = []
  }

  /** The connection is gone: unanswered step 1s will never be answered. */
  connectionClosed (): void {
    this.connectionOpened()
    this.publish()
  }

  /** A frame went out on the current connection. */
  sentFrame (frame: Frame): void {
    switch (frame.kind) {
      case 'sync-step1':
        this.barriers.push({ upTo: this.sent, at: this.now() })
        break
      case 'sync-step2':
        this.caughtUp = true
        this.sent = this.made
        break
      case 'update':
        if (this.caughtUp) this.sent = this.made
        this.updatesSent++
        break
      default:
        return
    }
    this.publish()
  }

  /** A frame arrived on the current connection. */
  receivedFrame (frame: Frame): void {
    if (frame.kind === 'sync-step2') {
      const barrier = this.barriers.shift()
      if (barrier !== undefined) {
        this.confirmed = Math.max(this.confirmed, barrier.upTo)
        this.latencyMs = Math.round(this.now() - barrier.at)
      }
    } else if (frame.kind === 'update') {
      this.updatesReceived++
      this.received.push(this.now())
    } else {
      return
    }
    this.publish()
  }

  /** Whether changes were sent that no pending step 1 will confirm: time to send one. */
  needsBarrier (): boolean {
    const last = this.barriers.length > 0 ? this.barriers[this.barriers.length - 1].upTo : this.confirmed
    return this.sent > last
  }

  /** Re-reads the clock, so the update rate falls when nothing happens. */
  tick (): void {
    this.publish()
  }

  private snapshot (): SyncState {
    const since = this.now() - RATE_WINDOW_MS
    while (this.received.length > 0 && this.received[0] < since) this.received.shift()
    return {
      unsyncedChanges: this.made - this.confirmed,
      latencyMs: this.latencyMs,
      updatesPerSecond: Math.round((this.received.length * 10_000) / RATE_WINDOW_MS) / 10,
      updatesReceived: this.updatesReceived,
      updatesSent: this.updatesSent
    }
  }

  private publish (): void {
    this.state.set(this.snapshot())
  }
}
