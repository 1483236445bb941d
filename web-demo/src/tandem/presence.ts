// Who is here: every client's awareness state as a typed list, and the local user's own state
// (name, colour, idle, typing), kept up to date from what the user does.

import type { Awareness } from 'y-protocols/awareness'
import { Value } from './store'

/** How a user appears to others. `colorLight` tints their selections. */
export interface User {
  name: string
  color: string
  colorLight?: string
}

/** One client in the document (a person may have several, one per tab). */
export interface Peer {
  clientId: number
  user: User
  /** This page. */
  isLocal: boolean
  /** No activity for a while (see `idleAfterMs`). */
  idle: boolean
  /** Changed the document in the last moments (see `typingForMs`). */
  typing: boolean
}

export interface PresenceOptions {
  user: User
  /** Without activity for this long, the user shows as idle. */
  idleAfterMs?: number
  /** After a local change, the user shows as typing for this long. */
  typingForMs?: number
}

export const DEFAULT_IDLE_AFTER_MS = 60_000
export const DEFAULT_TYPING_FOR_MS = 2_000

/** The state Tandem's client layer publishes in awareness, next to y-codemirror's `cursor`. */
interface PresenceState {
  user?: Partial<User>
  idle?: boolean
  typing?: boolean
}

/** Reads one awareness state; anything missing gets a neutral default. */
export function toPeer (clientId: number, state: PresenceState, localId: number): Peer {
  const user = state.user ?? {}
  return {
    clientId,
    user: {
      name: typeof user.name === 'string' && user.name !== '' ? user.name : 'Anonymous',
      color: typeof user.color === 'string' ? user.color : '#64748b',
      colorLight: typeof user.colorLight === 'string' ? user.colorLight : undefined
    },
    isLocal: clientId === localId,
    idle: state.idle === true,
    typing: state.typing === true
  }
}

/** The local peer first, then everyone else by name. */
export function sortPeers (peers: Peer[]): Peer[] {
  return [...peers].sort((a, b) =>
    Number(b.isLocal) - Number(a.isLocal) ||
    a.user.name.localeCompare(b.user.name) ||
    a.clientId - b.clientId
  )
}

/** Up to two initials of a name: "Ada Lovelace" → "AL", "ada" → "A". */
export function initials (name: string): string {
  const words = name.trim().split(/\s+/).filter((word) => word !== '')
  return words.slice(0, 2).map((word) => [...word][0].toUpperCase()).join('') || '?'
}

export class Presence {
  /** Everyone here, the local user first. */
  readonly peers: Value<Peer[]>
  private readonly idleAfterMs: number
  private readonly typingForMs: number
  private idleTimer: ReturnType<typeof setTimeout> | undefined
  private typingTimer: ReturnType<typeof setTimeout> | undefined
  private readonly onChange = (): void => { this.peers.set(this.read()) }

  constructor (private readonly awareness: Awareness, options: PresenceOptions) {
    this.idleAfterMs = options.idleAfterMs ?? DEFAULT_IDLE_AFTER_MS
    this.typingForMs = options.typingForMs ?? DEFAULT_TYPING_FOR_MS
    this.peers = new Value<Peer[]>([])
    awareness.setLocalStateField('user', withLight(options.user))
    awareness.setLocalStateField('idle', false)
    awareness.setLocalStateField('typing', false)
    awareness.on('change', this.onChange)
    this.peers.set(this.read())
    this.armIdle()
  }

  /** Changes how the local user appears. */
  setUser (user: User): void {
    this.awareness.setLocalStateField('user', withLight(user))
  }

  /** The user did something (typed, clicked, moved): not idle. */
  activity (): void {
    if (this.localState().idle === true) this.awareness.setLocalStateField('idle', false)
    this.armIdle()
  }

  /** The user changed the document: typing for a moment. */
  typing (): void {
    this.activity()
    if (this.localState().typing !== true) this.awareness.setLocalStateField('typing', true)
    clearTimeout(this.typingTimer)
    this.typingTimer = setTimeout(() => {
      this.awareness.setLocalStateField('typing', false)
    }, this.typingForMs)
  }

  destroy (): void {
    clearTimeout(this.idleTimer)
    clearTimeout(this.typingTimer)
    this.awareness.off('change', this.onChange)
  }

  private armIdle (): void {
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => {
      this.awareness.setLocalStateField('idle', true)
    }, this.idleAfterMs)
  }

  private localState (): PresenceState {
    return (this.awareness.getLocalState() ?? {}) as PresenceState
  }

  private read (): Peer[] {
    const localId = this.awareness.clientID
    const peers: Peer[] = []
    this.awareness.getStates().forEach((state, clientId) => {
      peers.push(toPeer(clientId, state as PresenceState, localId))
    })
    return sortPeers(peers)
  }
}

/** A user with `colorLight` for selections: their colour at 20 % opacity. */
function withLight (user: User): User {
  if (user.colorLight !== undefined || !/^#[0-9a-f]{6}$/i.test(user.color)) return user
  return { ...user, colorLight: `${user.color}33` }
}
