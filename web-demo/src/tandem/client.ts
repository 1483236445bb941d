// One document, live: a Y.Doc synced by y-websocket with Tandem, plus what an app shows around
// it (connection status, presence, custom events, sync state). The provider does the syncing;
// this layer watches its socket and events and adds the rest.

import { WebsocketProvider } from 'y-websocket'
import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
import type { Awareness } from 'y-protocols/awareness'

import { EventChannel } from './events'
import { Presence, type User } from './presence'
import { defaultServerUrl, documentPath, encodeEvent, encodeSyncStep1, MessageType, readFrame } from './protocol'
import { type Readable, Value, shallowEqual } from './store'
import { type ConnectionStatus, initialStatus, nextStatus, retryDelay, type StatusEvent } from './status'
import { SyncTracker, type SyncState } from './sync'

export interface ConnectOptions {
  /** The document's name (any string; `/` allowed). */
  name: string
  /** How this user appears to others. */
  user: User
  /** y-websocket server URL; default: `/ws` on the page's own origin. */
  url?: string
  /** An access token, sent as `?token=` (servers started with a JWT key need one). */
  token?: string
  /** Longest wait between reconnection attempts. */
  maxBackoffMs?: number
  /** How often to measure the round trip while nothing else does. */
  latencyIntervalMs?: number
  /** How long after a change is sent to ask the server whether it has it. */
  confirmDelayMs?: number
  /** Without activity for this long, the user shows as idle. */
  idleAfterMs?: number
  /** The WebSocket implementation (tests, Node). */
  WebSocket?: typeof WebSocket
  /** Start connected (default) or offline. */
  connect?: boolean
}

/** A document and everything live about it. Call `destroy()` when done. */
export interface TandemDocument {
  readonly name: string
  readonly doc: Y.Doc
  readonly provider: WebsocketProvider
  readonly awareness: Awareness
  readonly status: Readable<ConnectionStatus>
  readonly sync: Readable<SyncState>
  readonly presence: Presence
  readonly events: EventChannel
  /** Skips the wait before the next attempt (or comes back from offline). */
  reconnectNow(): void
  /** Closes the connection and stays offline; edits are kept and merged on reconnection. */
  goOffline(): void
  destroy(): void
}

export const DEFAULT_MAX_BACKOFF_MS = 5000
export const DEFAULT_LATENCY_INTERVAL_MS = 3000
export const DEFAULT_CONFIRM_DELAY_MS = 150

const OPEN = 1

export function connect (options: ConnectOptions): TandemDocument {
  const maxBackoffMs = options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS
  const doc = new Y.Doc()
  const tracker = new SyncTracker()
  const status = new Value<ConnectionStatus>(initialStatus, shallowEqual)
  const dispatch = (event: StatusEvent): void => { status.set(nextStatus(status.get(), event)) }
  // Set right below; the doc's listeners must exist before the provider's.
  let provider: WebsocketProvider | null = null
  let presence: Presence | null = null

  // Registered before the provider's own listener, so a change is counted before it is sent.
  doc.on('update', (_update: Uint8Array, origin: unknown) => {
    if (provider !== null && origin === provider) return
    tracker.localChange()
    presence?.typing()
  })

  const Base = options.WebSocket ?? WebSocket
  const current = (socket: WebSocket): boolean => provider !== null && provider.ws === socket
  class TrackedWebSocket extends Base {
    constructor (url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      // Listeners added here run before y-websocket's `onopen`/`onmessage`.
      this.addEventListener('open', () => {
        if (current(this)) tracker.connectionOpened()
      })
      this.addEventListener('message', (event: MessageEvent) => {
        if (current(this) && event.data instanceof ArrayBuffer) {
          tracker.receivedFrame(readFrame(new Uint8Array(event.data)))
        }
      })
    }

    send (data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      if (current(this) && data instanceof Uint8Array) {
        tracker.sentFrame(readFrame(data))
        scheduleConfirm()
      }
      super.send(data)
    }
  }

  const params: Record<string, string> = { events: '1' }
  if (options.token !== undefined) params.token = options.token
  provider = new WebsocketProvider(
    options.url ?? defaultServerUrl(window.location),
    documentPath(options.name),
    doc,
    {
      params,
      WebSocketPolyfill: TrackedWebSocket as unknown as typeof WebSocket,
      maxBackoffTime: maxBackoffMs,
      disableBc: true,
      connect: false
    }
  )
  const ws = provider

  const sendJson = (message: unknown): boolean => {
    const socket = ws.ws
    if (!ws.wsconnected || socket === null || socket.readyState !== OPEN) return false
    socket.send(encodeEvent(message))
    return true
  }
  const events = new EventChannel(sendJson)
  ws.messageHandlers[MessageType.Event] = (_encoder, decoder) => {
    events.receive(decoding.readVarString(decoder))
  }

  presence = new Presence(ws.awareness, { user: options.user, idleAfterMs: options.idleAfterMs })

  ws.on('status', ({ status: state }) => {
    if (state === 'connecting') dispatch({ type: 'connecting' })
    if (state === 'connected') {
      dispatch({ type: 'open' })
      events.opened()
    }
  })
  ws.on('sync', (synced: boolean) => {
    if (synced) dispatch({ type: 'synced' })
  })
  ws.on('connection-close', (event: CloseEvent | null) => {
    tracker.connectionClosed()
    events.closed()
    // Emitted before y-websocket counts the failure and schedules the next attempt.
    const attempt = ws.wsUnsuccessfulReconnects + 1
    dispatch({
      type: 'closed',
      code: event?.code ?? null,
      attempt,
      retryInMs: ws.shouldConnect ? retryDelay(attempt, maxBackoffMs) : null,
      at: Date.now()
    })
  })
  ws.on('closed', ({ code, reason }) => {
    dispatch({ type: 'refused', code, reason })
  })

  let confirmTimer: ReturnType<typeof setTimeout> | undefined
  const confirmDelayMs = options.confirmDelayMs ?? DEFAULT_CONFIRM_DELAY_MS
  const askServer = (): void => {
    const socket = ws.ws
    if (ws.wsconnected && socket !== null && socket.readyState === OPEN) socket.send(encodeSyncStep1(doc))
  }
  function scheduleConfirm (): void {
    if (confirmTimer !== undefined) return
    confirmTimer = setTimeout(() => {
      confirmTimer = undefined
      if (tracker.needsBarrier()) askServer()
    }, confirmDelayMs)
  }
  const latencyTimer = setInterval(askServer, options.latencyIntervalMs ?? DEFAULT_LATENCY_INTERVAL_MS)
  const tickTimer = setInterval(() => { tracker.tick() }, 1000)

  const onNetwork = (): void => { dispatch({ type: 'network', online: navigator.onLine }) }
  window.addEventListener('online', onNetwork)
  window.addEventListener('offline', onNetwork)

  if (options.connect !== false) ws.connect()
  else dispatch({ type: 'offline', reason: 'not connected yet' })

  const localPresence = presence
  return {
    name: options.name,
    doc,
    provider: ws,
    awareness: ws.awareness,
    status,
    sync: tracker.state,
    presence: localPresence,
    events,
    reconnectNow () {
      if (ws.wsconnected) return
      ws.disconnect()
      ws.connect()
    },
    goOffline () {
      dispatch({ type: 'offline', reason: 'you went offline' })
      ws.disconnect()
    },
    destroy () {
      clearTimeout(confirmTimer)
      clearInterval(latencyTimer)
      clearInterval(tickTimer)
      window.removeEventListener('online', onNetwork)
      window.removeEventListener('offline', onNetwork)
      localPresence.destroy()
      ws.destroy()
      doc.destroy()
    }
  }
}
