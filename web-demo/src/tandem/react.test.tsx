import { act, render, renderHook, screen } from '@testing-library/react'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'

import { FakeWebSocket, serverEvent, serverStep1 } from './fake-socket'
import { useConnectionStatus, useDocument, useEvents, usePresence, useSyncState } from './react'

const options = {
  name: 'react',
  user: { name: 'Grace Hopper', color: '#16a34a' },
  url: 'ws://tandem.test/ws',
  WebSocket: FakeWebSocket as unknown as typeof WebSocket
}

beforeEach(() => { FakeWebSocket.sockets = [] })
afterEach(() => { vi.useRealTimers() })

function Status () {
  const live = useDocument(options)
  const status = useConnectionStatus(live)
  const peers = usePresence(live)
  const { entries } = useEvents(live)
  const sync = useSyncState(live)
  return (
    <p>
      <span data-testid='state'>{status.state}</span>
      <span data-testid='peers'>{peers.map((p) => p.user.name).join(',')}</span>
      <span data-testid='events'>{entries.length}</span>
      <span data-testid='unsynced'>{sync.unsyncedChanges}</span>
    </p>
  )
}

describe('hooks', () => {
  it('render the connection, presence, events and sync state as they change', () => {
    const { unmount } = render(<Status />)
    expect(screen.getByTestId('state').textContent).toBe('connecting')
    expect(screen.getByTestId('peers').textContent).toBe('Grace Hopper')
    const socket = FakeWebSocket.latest()
    act(() => {
      socket.open()
      socket.receive(serverStep1(new Y.Doc()))
      socket.receive(serverEvent({ seq: 1, type: 'chat', data: {}, from: 'peer:1', at: 1 }))
    })
    expect(screen.getByTestId('state').textContent).toBe('connected')
    expect(screen.getByTestId('events').textContent).toBe('1')
    act(() => { socket.serverClose(1006) })
    expect(screen.getByTestId('state').textContent).toBe('reconnecting')
    unmount()
  })

  it('useDocument disconnects on unmount and follows the name', () => {
    const { result, rerender, unmount } = renderHook((props: { name: string }) => useDocument({ ...options, name: props.name }), {
      initialProps: { name: 'one' }
    })
    const first = result.current
    expect(first?.name).toBe('one')
    rerender({ name: 'two' })
    expect(result.current?.name).toBe('two')
    expect(first?.provider.shouldConnect).toBe(false)
    unmount()
    expect(FakeWebSocket.sockets.map((s) => s.url)).toEqual([
      'ws://tandem.test/ws/one?events=1',
      'ws://tandem.test/ws/two?events=1'
    ])
  })
})
