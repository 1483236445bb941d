// Tandem's client layer: a small typed API over y-websocket for apps that edit Yjs documents
// through a Tandem server. Copy this folder; it needs yjs, y-websocket, y-protocols, lib0 and,
// for the hooks, React.
//
//   const live = connect({ name: 'notes/plan', user: { name: 'Ada', color: '#e11d48' } })
//   live.doc.getText('text')                  // the Y.Doc, synced
//   live.status.subscribe(() => live.status.get().state)   // connecting, connected, …
//   live.presence.peers.get()                 // who is here
//   live.events.emit('chat', { id, text })    // custom events, with history
//   live.sync.get().unsyncedChanges           // local changes the server has not confirmed
//
// In React: useDocument, useConnectionStatus, usePresence, useEvents, useSyncState.

export { connect, type ConnectOptions, type TandemDocument } from './client'
export { type ConnectionState, type ConnectionStatus, describeClose } from './status'
export { initials, type Peer, type User } from './presence'
export { type EventEntry, type EventGap, isGap, type TandemEvent } from './events'
export { type SyncState } from './sync'
export { type Readable } from './store'
export { type ApiResult, type DocInfo, type DocList, type ServerStatus, TandemApi } from './api'
export { documentPath } from './protocol'
export { useConnectionStatus, useDocument, useEvents, usePresence, useSyncState } from './react'
