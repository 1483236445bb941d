// The connection as a person sees it: connecting, connected, reconnecting (which attempt, when
// the next one starts) or offline (and why). A pure reducer over what the provider reports, so
// it is testable without a socket.

/** The four states of the connection indicator. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline'

/** Everything the connection indicator shows. */
export interface ConnectionStatus {
  state: ConnectionState
  /** The document is in sync with the server on this connection (first sync done). */
  synced: boolean
  /** Failed attempts in a row: the current attempt is `attempt + 1`. */
  attempt: number
  /** When the next attempt starts (epoch ms), while waiting between attempts; else `null`. */
  nextRetryAt: number | null
  /** Why the connection is offline or was last lost, for people. */
  reason: string | null
  /** Whether a connection was ever open. */
  everConnected: boolean
}

/** What happened to the connection. */
export type StatusEvent =
  | { type: 'connecting' }
  | { type: 'open' }
  | { type: 'synced' }
  /** The socket closed; `retryInMs` is null when no retry is scheduled (we went offline). */
  | { type: 'closed', code: number | null, attempt: number, retryInMs: number | null, at: number }
  /** The server closed for good (a 44xx code): no retry until asked. */
  | { type: 'refused', code: number, reason: string }
  | { type: 'offline', reason: string }
  | { type: 'network', online: boolean }

export const initialStatus: ConnectionStatus = {
  state: 'connecting',
  synced: false,
  attempt: 0,
  nextRetryAt: null,
  reason: null,
  everConnected: false
}

/** Close codes Tandem uses that a person may want to read about. */
const CLOSE_REASONS: Record<number, string> = {
  1001: 'the server is restarting',
  1006: 'the connection was lost',
  1008: 'too many messages',
  1009: 'a message was too large',
  1011: 'the server could not store the document',
  1013: 'the connection was too slow',
  4401: 'the access token expired',
  4404: 'the document was deleted',
  4413: 'the document is too large'
}

/** A close code, in words. */
export function describeClose (code: number | null, reason = ''): string {
  if (code === null) return 'the connection was closed'
  const known = CLOSE_REASONS[code]
  if (known !== undefined) return known
  return reason !== '' ? reason : `closed with code ${code}`
}

export function nextStatus (status: ConnectionStatus, event: StatusEvent): ConnectionStatus {
  switch (event.type) {
    case 'connecting':
      if (status.state === 'offline' && status.reason === NO_NETWORK) {
        return { ...status, nextRetryAt: null, synced: false }
      }
      return {
        ...status,
        state: status.everConnected || status.attempt > 0 ? 'reconnecting' : 'connecting',
        nextRetryAt: null,
        synced: false
      }
    case 'open':
      return { ...status, state: 'connected', everConnected: true, nextRetryAt: null, reason: null }
    case 'synced':
      return { ...status, synced: true, attempt: 0 }
    case 'closed':
      if (event.retryInMs === null) {
        return { ...status, state: 'offline', synced: false, nextRetryAt: null }
      }
      return {
        ...status,
        state: status.state === 'offline' ? 'offline' : 'reconnecting',
        synced: false,
        attempt: event.attempt,
        nextRetryAt: event.at + event.retryInMs,
        reason: describeClose(event.code)
      }
    case 'refused':
      return {
        ...status,
        state: 'offline',
        synced: false,
        nextRetryAt: null,
        reason: describeClose(event.code, event.reason)
      }
    case 'offline':
      return { ...status, state: 'offline', synced: false, nextRetryAt: null, reason: event.reason }
    case 'network':
      if (event.online) {
        return status.state === 'offline' && status.reason === NO_NETWORK
          ? { ...status, state: status.everConnected ? 'reconnecting' : 'connecting', reason: null }
          : status
      }
      return status.state === 'connected' ? status : { ...status, state: 'offline', reason: NO_NETWORK }
  }
}

/** The reason shown while the browser reports no network. */
export const NO_NETWORK = 'this device is offline'

/** y-websocket's wait before attempt `failures + 1`: 100 ms · 2^failures, at most `max`. */
export function retryDelay (failures: number, maxBackoffMs: number): number {
  return Math.min(2 ** failures * 100, maxBackoffMs)
}
