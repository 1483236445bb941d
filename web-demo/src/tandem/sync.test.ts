import { describe, expect, it } from 'vitest'

import type { Frame } from './protocol'
import { SyncTracker } from './sync'

const step1: Frame = { kind: 'sync-step1' }
const step2: Frame = { kind: 'sync-step2', update: new Uint8Array() }
const update: Frame = { kind: 'update', update: new Uint8Array() }

function tracker (): { sync: SyncTracker, clock: { now: number } } {
  const clock = { now: 1000 }
  return { sync: new SyncTracker(() => clock.now), clock }
}

/** A fresh connection: the client's step 1, the server's step 1 answered by our step 2. */
function handshake (sync: SyncTracker): void {
  sync.connectionOpened()
  sync.sentFrame(step1)
  sync.sentFrame(step2)
  sync.receivedFrame(step2)
}

describe('SyncTracker', () => {
  it('counts a change as unsynced until a step 1 sent after it is answered', () => {
    const { sync, clock } = tracker()
    handshake(sync)
    sync.localChange()
    sync.sentFrame(update)
    expect(sync.state.get().unsyncedChanges).toBe(1)
    expect(sync.needsBarrier()).toBe(true)
    sync.sentFrame(step1)
    expect(sync.needsBarrier()).toBe(false)
    clock.now += 42
    sync.receivedFrame(step2)
    expect(sync.state.get()).toMatchObject({ unsyncedChanges: 0, latencyMs: 42 })
  })

  it('keeps offline changes until the reconnection sent them and the server answered after', () => {
    const { sync } = tracker()
    handshake(sync)
    sync.connectionClosed()
    sync.localChange()
    sync.localChange()
    sync.localChange()
    expect(sync.state.get().unsyncedChanges).toBe(3)

    sync.connectionOpened()
    sync.sentFrame(step1) // y-websocket's own, before our changes went out
    sync.receivedFrame(step2)
    expect(sync.state.get().unsyncedChanges).toBe(3)
    sync.sentFrame(step2) // the answer to the server's step 1 carries them
    expect(sync.needsBarrier()).toBe(true)
    sync.sentFrame(step1)
    sync.receivedFrame(step2)
    expect(sync.state.get().unsyncedChanges).toBe(0)
  })

  it('does not count an update sent before the step 2 of a new connection as covering older changes', () => {
    const { sync } = tracker()
    handshake(sync)
    sync.connectionClosed()
    sync.localChange() // offline
    sync.connectionOpened()
    sync.sentFrame(step1)
    sync.localChange() // typed between open and our step 2
    sync.sentFrame(update)
    sync.sentFrame(step1)
    sync.receivedFrame(step2)
    sync.receivedFrame(step2)
    expect(sync.state.get().unsyncedChanges).toBe(2)
  })

  it('forgets unanswered step 1s when the connection closes', () => {
    const { sync } = tracker()
    handshake(sync)
    sync.localChange()
    sync.sentFrame(update)
    sync.sentFrame(step1)
    sync.connectionClosed()
    sync.connectionOpened()
    sync.sentFrame(step1)
    sync.receivedFrame(step2) // answers the new connection's step 1, which proves nothing
    expect(sync.state.get().unsyncedChanges).toBe(1)
  })

  it('measures the update rate over the last five seconds', () => {
    const { sync, clock } = tracker()
    handshake(sync)
    for (let i = 0; i < 10; i++) {
      sync.receivedFrame(update)
      clock.now += 100
    }
    expect(sync.state.get()).toMatchObject({ updatesPerSecond: 2, updatesReceived: 10 })
    clock.now += 5000
    sync.tick()
    expect(sync.state.get()).toMatchObject({ updatesPerSecond: 0, updatesReceived: 10 })
  })
})
