import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate } from 'y-protocols/awareness'
import * as Y from 'yjs'

import { initials, Presence, sortPeers, toPeer } from './presence'

/** Copies every state of `from` into `to`, as the server would relay them. */
function relay (from: Awareness, to: Awareness): void {
  applyAwarenessUpdate(to, encodeAwarenessUpdate(from, [...from.getStates().keys()]), 'server')
}

describe('Presence', () => {
  beforeEach(() => { vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  it('lists everyone with their name and colour, the local user first', () => {
    const mine = new Awareness(new Y.Doc())
    const theirs = new Awareness(new Y.Doc())
    const me = new Presence(mine, { user: { name: 'Zoe', color: '#e11d48' } })
    const them = new Presence(theirs, { user: { name: 'Ada Lovelace', color: '#2563eb' } })
    relay(theirs, mine)
    const peers = me.peers.get()
    expect(peers.map((p) => [p.user.name, p.isLocal])).toEqual([['Zoe', true], ['Ada Lovelace', false]])
    expect(peers[0].user.colorLight).toBe('#e11d4833')
    me.destroy()
    them.destroy()
  })

  it('goes idle after a minute without activity and comes back on activity', () => {
    const awareness = new Awareness(new Y.Doc())
    const presence = new Presence(awareness, { user: { name: 'Ada', color: '#2563eb' } })
    vi.advanceTimersByTime(59_000)
    expect(presence.peers.get()[0].idle).toBe(false)
    vi.advanceTimersByTime(1_000)
    expect(presence.peers.get()[0].idle).toBe(true)
    presence.activity()
    expect(presence.peers.get()[0].idle).toBe(false)
    presence.destroy()
  })

  it('shows typing for a moment after each change', () => {
    const awareness = new Awareness(new Y.Doc())
    const presence = new Presence(awareness, { user: { name: 'Ada', color: '#2563eb' }, typingForMs: 2000 })
    presence.typing()
    expect(presence.peers.get()[0].typing).toBe(true)
    vi.advanceTimersByTime(1500)
    presence.typing()
    vi.advanceTimersByTime(1500)
    expect(presence.peers.get()[0].typing).toBe(true)
    vi.advanceTimersByTime(500)
    expect(presence.peers.get()[0].typing).toBe(false)
    presence.destroy()
  })

  it('reads states from other clients defensively', () => {
    expect(toPeer(7, {}, 1)).toEqual({
      clientId: 7,
      user: { name: 'Anonymous', color: '#64748b', colorLight: undefined },
      isLocal: false,
      idle: false,
      typing: false
    })
    expect(toPeer(1, { user: { name: 42 as unknown as string }, idle: true }, 1)).toMatchObject({ isLocal: true, idle: true })
    const a = toPeer(3, { user: { name: 'b' } }, 1)
    const b = toPeer(2, { user: { name: 'a' } }, 1)
    const me = toPeer(1, { user: { name: 'z' } }, 1)
    expect(sortPeers([a, b, me]).map((p) => p.clientId)).toEqual([1, 2, 3])
  })

  it('makes initials', () => {
    expect(initials('Ada Lovelace')).toBe('AL')
    expect(initials('  grace   brewster murray hopper ')).toBe('GB')
    expect(initials('émile')).toBe('É')
    expect(initials('😀 face')).toBe('😀F')
    expect(initials('')).toBe('?')
  })
})
