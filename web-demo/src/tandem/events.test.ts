import { describe, expect, it } from 'vitest'

import { EventChannel, isGap, type TandemEvent } from './events'

function channel (limit?: number) {
  const sent: unknown[] = []
  let online = false
  const events = new EventChannel((message) => {
    if (!online) return false
    sent.push(message)
    return true
  }, limit)
  return {
    events,
    sent,
    connect () { online = true; events.opened() },
    disconnect () { online = false; events.closed() },
    receive (message: unknown) { events.receive(JSON.stringify(message)) },
    list () { return events.entries.get() }
  }
}

const chat = (seq: number, text: string, id?: string) =>
  ({ seq, type: 'chat', data: { text, ...(id !== undefined ? { id } : {}) }, from: 'peer:2', at: 1700000000000 + seq })

describe('EventChannel', () => {
  it('asks a newcomer\'s history first, then for what follows the last event it has', () => {
    const c = channel()
    c.connect()
    expect(c.sent).toEqual([{ since: 0 }])
    c.receive({ gap: { from: 1, to: 4 } })
    c.receive(chat(5, 'old'))
    c.receive(chat(6, 'older news'))
    c.disconnect()
    c.connect()
    expect(c.sent).toEqual([{ since: 0 }, { since: 6 }])
    expect(c.list()).toHaveLength(3)
    expect(isGap(c.list()[0])).toBe(true)
  })

  it('keeps events emitted offline and sends them on connection, numbered by their acks', () => {
    const c = channel()
    const first = c.events.emit('chat', { text: 'one' })
    c.events.emit('chat', { text: 'two' })
    expect(first.seq).toBeNull()
    expect(c.sent).toEqual([])
    c.connect()
    expect(c.sent).toEqual([{ since: 0 }, { type: 'chat', data: { text: 'one' } }, { type: 'chat', data: { text: 'two' } }])
    c.receive({ ack: 7 })
    c.receive({ ack: 8 })
    const own = c.list() as TandemEvent[]
    expect(own.map((e) => [e.seq, e.own, (e.data as { text: string }).text])).toEqual([[7, true, 'one'], [8, true, 'two']])
    c.disconnect()
    c.connect()
    expect(c.sent.at(-1)).toEqual({ since: 8 })
  })

  it('sends unacknowledged events again after a reconnection', () => {
    const c = channel()
    c.connect()
    c.events.emit('chat', { id: 'm1', text: 'hello' })
    c.disconnect()
    c.connect()
    expect(c.sent).toEqual([
      { since: 0 },
      { type: 'chat', data: { id: 'm1', text: 'hello' } },
      { since: 0 },
      { type: 'chat', data: { id: 'm1', text: 'hello' } }
    ])
  })

  it('drops repeated sequence numbers and copies of an event with the same id', () => {
    const c = channel()
    c.connect()
    c.receive(chat(1, 'a', 'x'))
    c.receive(chat(1, 'a', 'x'))
    c.receive(chat(2, 'a again', 'x'))
    c.receive(chat(3, 'b'))
    expect(c.list()).toHaveLength(2)
  })

  it('settles our own pending event when the replay shows the server had it', () => {
    const c = channel()
    c.connect()
    c.events.emit('chat', { id: 'm1', text: 'hello' })
    c.disconnect()
    c.receive({ ...chat(4, 'hello', 'm1'), from: 'peer:1' })
    const [own] = c.list() as TandemEvent[]
    expect(own).toMatchObject({ seq: 4, own: true })
    c.connect()
    expect(c.sent.at(-1)).toEqual({ since: 4 })
  })

  it('ignores what it cannot read and keeps at most its limit', () => {
    const c = channel(3)
    c.connect()
    c.events.receive('not json')
    c.events.receive('[1]')
    c.receive({ seq: 'x' })
    c.receive({ ack: 1 })
    expect(c.list()).toHaveLength(0)
    for (let seq = 1; seq <= 5; seq++) c.receive(chat(seq, `m${seq}`))
    expect((c.list() as TandemEvent[]).map((e) => e.seq)).toEqual([3, 4, 5])
  })
})
