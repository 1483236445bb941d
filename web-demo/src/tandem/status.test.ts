import { describe, expect, it } from 'vitest'

import { describeClose, initialStatus, nextStatus, NO_NETWORK, retryDelay, type StatusEvent } from './status'

function run (...events: StatusEvent[]) {
  return events.reduce(nextStatus, initialStatus)
}

describe('connection status', () => {
  it('is connecting, then connected and synced', () => {
    expect(run({ type: 'connecting' }).state).toBe('connecting')
    expect(run({ type: 'connecting' }, { type: 'open' })).toMatchObject({ state: 'connected', synced: false })
    expect(run({ type: 'connecting' }, { type: 'open' }, { type: 'synced' })).toMatchObject({ state: 'connected', synced: true })
  })

  it('is reconnecting after a lost connection, with the attempt and the next retry', () => {
    const status = run(
      { type: 'connecting' }, { type: 'open' }, { type: 'synced' },
      { type: 'closed', code: 1001, attempt: 1, retryInMs: 200, at: 10_000 }
    )
    expect(status).toMatchObject({ state: 'reconnecting', attempt: 1, nextRetryAt: 10_200, synced: false, reason: 'the server is restarting' })
    const trying = nextStatus(status, { type: 'connecting' })
    expect(trying).toMatchObject({ state: 'reconnecting', attempt: 1, nextRetryAt: null })
    expect(nextStatus(trying, { type: 'open' })).toMatchObject({ state: 'connected', reason: null })
  })

  it('is reconnecting when the first attempt failed', () => {
    expect(run({ type: 'connecting' }, { type: 'closed', code: 1006, attempt: 1, retryInMs: 200, at: 0 }, { type: 'connecting' }).state)
      .toBe('reconnecting')
  })

  it('is offline when the user went offline, until asked to connect', () => {
    const offline = run({ type: 'connecting' }, { type: 'open' }, { type: 'offline', reason: 'you went offline' },
      { type: 'closed', code: null, attempt: 1, retryInMs: null, at: 0 })
    expect(offline).toMatchObject({ state: 'offline', reason: 'you went offline', nextRetryAt: null })
    expect(nextStatus(offline, { type: 'connecting' }).state).toBe('reconnecting')
  })

  it('is offline with the reason when the server refuses for good', () => {
    const status = run({ type: 'connecting' }, { type: 'open' },
      { type: 'closed', code: 4404, attempt: 1, retryInMs: 200, at: 0 },
      { type: 'refused', code: 4404, reason: '' })
    expect(status).toMatchObject({ state: 'offline', reason: 'the document was deleted', nextRetryAt: null })
  })

  it('follows the network while not connected', () => {
    const lost = run({ type: 'connecting' }, { type: 'open' }, { type: 'closed', code: 1006, attempt: 1, retryInMs: 200, at: 0 },
      { type: 'network', online: false })
    expect(lost).toMatchObject({ state: 'offline', reason: NO_NETWORK })
    expect(nextStatus(lost, { type: 'connecting' }).state).toBe('offline')
    expect(nextStatus(lost, { type: 'network', online: true }).state).toBe('reconnecting')
    const connected = run({ type: 'connecting' }, { type: 'open' })
    expect(nextStatus(connected, { type: 'network', online: false }).state).toBe('connected')
  })

  it('describes close codes and backs off like y-websocket', () => {
    expect(describeClose(4401)).toBe('the access token expired')
    expect(describeClose(4999, 'custom')).toBe('custom')
    expect(describeClose(4999)).toBe('closed with code 4999')
    expect(describeClose(null)).toBe('the connection was closed')
    expect([1, 2, 3, 4, 5, 6].map((n) => retryDelay(n, 5000))).toEqual([200, 400, 800, 1600, 3200, 5000])
  })
})
