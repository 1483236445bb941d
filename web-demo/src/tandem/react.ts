// React hooks over the client layer. Each reads a `Readable` with useSyncExternalStore, so a
// component re-renders exactly when what it shows changes.

import { useCallback, useEffect, useState, useSyncExternalStore } from 'react'

import { connect, type ConnectOptions, type TandemDocument } from './client'
import { type EventEntry } from './events'
import { type Peer } from './presence'
import { type Readable } from './store'
import { type ConnectionStatus, initialStatus } from './status'
import { type SyncState } from './sync'

const noop = (): void => {}
const never = (): (() => void) => noop

function useReadable<T> (readable: Readable<T> | undefined, fallback: T): T {
  return useSyncExternalStore(
    readable?.subscribe ?? never,
    readable !== undefined ? readable.get : () => fallback
  )
}

/**
 * Connects to the document `options.name` while the component is mounted (and reconnects to
 * another when the name, server or token changes). `null` until the first effect ran.
 */
export function useDocument (options: ConnectOptions): TandemDocument | null {
  const [document, setDocument] = useState<TandemDocument | null>(null)
  const { name, url, token } = options
  useEffect(() => {
    const next = connect(options)
    setDocument(next)
    return () => {
      next.destroy()
      setDocument(null)
    }
    // The user and the tunables are read once; presence.setUser changes the user later.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [name, url, token])
  return document
}

export function useConnectionStatus (document: TandemDocument | null): ConnectionStatus {
  return useReadable(document?.status, initialStatus)
}

const nobody: Peer[] = []

/** Everyone in the document, the local user first. */
export function usePresence (document: TandemDocument | null): Peer[] {
  return useReadable(document?.presence.peers, nobody)
}

const noEntries: EventEntry[] = []

/** The document's custom events (and gaps), and a function that sends one. */
export function useEvents (document: TandemDocument | null): {
  entries: EventEntry[]
  emit: <T>(type: string, data: T) => void
} {
  const entries = useReadable(document?.events.entries, noEntries)
  const emit = useCallback(<T,>(type: string, data: T) => { document?.events.emit(type, data) }, [document])
  return { entries, emit }
}

const idle: SyncState = { unsyncedChanges: 0, latencyMs: null, updatesPerSecond: 0, updatesReceived: 0, updatesSent: 0 }

/** Local changes not yet on the server, round-trip time, update rate. */
export function useSyncState (document: TandemDocument | null): SyncState {
  return useReadable(document?.sync, idle)
}
