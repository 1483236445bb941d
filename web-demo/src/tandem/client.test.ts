import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'

import { connect, type TandemDocument } from './client'
import { FakeWebSocket, serverEvent, serverStep1, serverSync } from './fake-socket'
import { readFrame } from './protocol'

let live: TandemDocument | null = null

function open (name = 'notes/a b'): TandemDocument {
  live = connect({
    name,
    user: { name: 'Ada', color: '#2563eb' },
    url: 'ws://tandem.test/ws',
    WebSocket: FakeWebSocket as unknown as typeof WebSocket,
    latencyIntervalMs: 60_000
  })
  return live
}

/** What a Tandem server does on connection: its step 1, then the answer to the client's. */
function serverAccepts (socket: FakeWebSocket, server: Y.Doc): void {
  socket.open()
  socket.receive(serverStep1(server))
  answerStep1s(socket, server)
}

/** Applies what the client sent since `from` to the server's document, and answers its step 1s. */
function answerStep1s (socket: FakeWebSocket, server: Y.Doc, from = 0): number {
  for (const frame of socket.sent.slice(from)) {
    const read = readFrame(frame)
    if (read.kind === 'sync-step2' || read.kind === 'update') Y.applyUpdate(server, read.update)
    if (read.kind === 'sync-step1') socket.receive(serverSync(Y.encodeStateAsUpdate(server)))
  }
  return socket.sent.length
}

beforeEach(() => {
  vi.useFakeTimers()
  FakeWebSocket.sockets = []
})

afterEach(() => {
  live?.destroy()
  live = null
  vi.useRealTimers()
})

describe('connect', () => {
  it('opens the document by its encoded name with events on, and syncs', () => {
    const tandem = open()
    const socket = FakeWebSocket.latest()
    expect(socket.url).toBe('ws://tandem.test/ws/notes/a%20b?events=1')
    expect(tandem.status.get().state).toBe('connecting')

    const server = new Y.Doc()
    server.getText('text').insert(0, 'from the server')
    serverAccepts(socket, server)
    expect(tandem.status.get()).toMatchObject({ state: 'connected', synced: true })
    expect(tandem.doc.getText('text').toString()).toBe('from the server')
    expect(socket.sentKinds().slice(0, 3)).toEqual(['event {"since":0}', 'step1', 'awareness'])
  })

  it('counts local changes until the server confirms them, and measures the round trip', () => {
    const tandem = open()
    const socket = FakeWebSocket.latest()
    const server = new Y.Doc()
    serverAccepts(socket, server)
    let answered = socket.sent.length

    tandem.doc.getText('text').insert(0, 'hi')
    tandem.doc.getText('text').insert(2, '!')
    expect(tandem.sync.get().unsyncedChanges).toBe(2)
    vi.advanceTimersByTime(150) // the client asks whether the server has them
    expect(socket.sentKinds().slice(answered).filter((kind) => kind !== 'awareness')).toEqual(['update', 'update', 'step1'])
    vi.advanceTimersByTime(25)
    answered = answerStep1s(socket, server, answered)
    expect(tandem.sync.get()).toMatchObject({ unsyncedChanges: 0, latencyMs: 25, updatesSent: 2 })
    expect(server.getText('text').toString()).toBe('hi!')
  })

  it('keeps offline edits, reconnects on its own or at once, and merges them', () => {
    const tandem = open()
    const server = new Y.Doc()
    serverAccepts(FakeWebSocket.latest(), server)
    const before = Date.now()
    FakeWebSocket.latest().serverClose(1001)
    expect(tandem.status.get()).toMatchObject({ state: 'reconnecting', attempt: 1, nextRetryAt: before + 200 })

    tandem.doc.getText('text').insert(0, 'offline ')
    tandem.doc.getText('text').insert(8, 'edits')
    server.getText('text').insert(0, 'online.')
    expect(tandem.sync.get().unsyncedChanges).toBe(2)

    vi.advanceTimersByTime(200) // the scheduled attempt fails
    expect(FakeWebSocket.sockets).toHaveLength(2)
    FakeWebSocket.latest().serverClose(1006)
    expect(tandem.status.get()).toMatchObject({ state: 'reconnecting', attempt: 2 })

    tandem.reconnectNow() // skips the 400 ms wait
    expect(FakeWebSocket.sockets).toHaveLength(3)
    const socket = FakeWebSocket.latest()
    serverAccepts(socket, server)
    vi.advanceTimersByTime(200)
    answerStep1s(socket, server)
    expect(tandem.status.get()).toMatchObject({ state: 'connected', synced: true, attempt: 0 })
    expect(tandem.sync.get().unsyncedChanges).toBe(0)
    expect(server.getText('text').toString()).toBe(tandem.doc.getText('text').toString())
    expect(server.getText('text').toString()).toContain('offline edits')
    expect(server.getText('text').toString()).toContain('online.')
  })

  it('stays offline when asked to, and when the server refuses for good', () => {
    const tandem = open()
    serverAccepts(FakeWebSocket.latest(), new Y.Doc())
    tandem.goOffline()
    vi.advanceTimersByTime(10_000)
    expect(FakeWebSocket.sockets).toHaveLength(1)
    expect(tandem.status.get()).toMatchObject({ state: 'offline', reason: 'you went offline' })

    tandem.reconnectNow()
    expect(FakeWebSocket.sockets).toHaveLength(2)
    expect(tandem.status.get().state).toBe('reconnecting')
    serverAccepts(FakeWebSocket.latest(), new Y.Doc())
    FakeWebSocket.latest().serverClose(4404, 'document deleted')
    vi.advanceTimersByTime(10_000)
    expect(FakeWebSocket.sockets).toHaveLength(2)
    expect(tandem.status.get()).toMatchObject({ state: 'offline', reason: 'the document was deleted' })
  })

  it('sends and receives custom events on the same socket', () => {
    const tandem = open()
    const socket = FakeWebSocket.latest()
    tandem.events.emit('chat', { id: 'm1', text: 'queued while connecting' })
    serverAccepts(socket, new Y.Doc())
    expect(socket.sentKinds()).toContain('event {"type":"chat","data":{"id":"m1","text":"queued while connecting"}}')
    socket.receive(serverEvent({ ack: 1 }))
    socket.receive(serverEvent({ seq: 2, type: 'chat', data: { id: 'm2', text: 'hello' }, from: 'peer:9', at: 5 }))
    expect(tandem.events.entries.get()).toMatchObject([
      { seq: 1, own: true, data: { text: 'queued while connecting' } },
      { seq: 2, own: false, from: 'peer:9', data: { text: 'hello' } }
    ])
  })

  it('marks the user as typing on local changes only', () => {
    const tandem = open()
    const socket = FakeWebSocket.latest()
    const server = new Y.Doc()
    serverAccepts(socket, server)
    server.getText('text').insert(0, 'remote')
    socket.receive(serverSync(Y.encodeStateAsUpdate(server), 2))
    expect(tandem.presence.peers.get()[0].typing).toBe(false)
    tandem.doc.getText('text').insert(0, 'local')
    expect(tandem.presence.peers.get()[0].typing).toBe(true)
  })
})
