// Who this browser is in the demo (a name and a colour, kept in localStorage), and the
// documents it opened recently.

import type { User } from '../tandem'

export const COLORS = ['#e11d48', '#db2777', '#9333ea', '#4f46e5', '#2563eb', '#0891b2', '#059669', '#65a30d', '#d97706', '#ea580c']
const ADJECTIVES = ['Amber', 'Brisk', 'Calm', 'Clever', 'Gentle', 'Lucky', 'Quiet', 'Swift', 'Witty', 'Bold', 'Sunny', 'Keen']
const ANIMALS = ['Otter', 'Falcon', 'Lynx', 'Heron', 'Panda', 'Fox', 'Koala', 'Orca', 'Wren', 'Yak', 'Ibis', 'Puffin']

const USER_KEY = 'tandem-demo:user'
const RECENT_KEY = 'tandem-demo:recent'
const RECENT_MAX = 8

function pick<T> (items: T[]): T {
  return items[Math.floor(Math.random() * items.length)]
}

function read<T> (key: string): T | null {
  try {
    const raw = localStorage.getItem(key)
    return raw === null ? null : JSON.parse(raw) as T
  } catch {
    return null
  }
}

function write (key: string, value: unknown): void {
  try {
    localStorage.setItem(key, JSON.stringify(value))
  } catch {
    // Private mode or a full quota: the demo works without remembering.
  }
}

/**
 * This browser's user: `?name=` / `?color=` in the URL when given (then remembered and removed
 * from the address bar), else the remembered one, else a new random one.
 */
export function loadUser (): User {
  const stored = read<Partial<User>>(USER_KEY)
  const params = new URLSearchParams(window.location.search)
  const user: User = {
    name: params.get('name') ?? (typeof stored?.name === 'string' ? stored.name : `${pick(ADJECTIVES)} ${pick(ANIMALS)}`),
    color: params.get('color') ?? (typeof stored?.color === 'string' ? stored.color : pick(COLORS))
  }
  if (params.has('name') || params.has('color')) {
    params.delete('name')
    params.delete('color')
    const query = params.toString()
    window.history.replaceState(null, '', window.location.pathname + (query !== '' ? `?${query}` : ''))
  }
  write(USER_KEY, user)
  return user
}

export function saveUser (user: User): void {
  write(USER_KEY, user)
}

export function recentDocuments (): string[] {
  const list = read<unknown>(RECENT_KEY)
  return Array.isArray(list) ? list.filter((name): name is string => typeof name === 'string') : []
}

export function rememberDocument (name: string): void {
  write(RECENT_KEY, [name, ...recentDocuments().filter((other) => other !== name)].slice(0, RECENT_MAX))
}

/** A fresh document name nobody is likely to have used. */
export function randomDocumentName (): string {
  return `scratch/${pick(ADJECTIVES).toLowerCase()}-${pick(ANIMALS).toLowerCase()}-${Math.floor(Math.random() * 900 + 100)}`
}
