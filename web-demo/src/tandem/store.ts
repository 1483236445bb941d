/** A value that changes over time: read it now, or be told when it changes. */
export interface Readable<T> {
  get(): T
  /** Calls `listener` after every change; returns the function that stops it. */
  subscribe(listener: () => void): () => void
}

/** A {@link Readable} its owner sets. Setting an equal value tells nobody. */
export class Value<T> implements Readable<T> {
  private listeners = new Set<() => void>()

  constructor (
    private value: T,
    private readonly equal: (a: T, b: T) => boolean = Object.is
  ) {}

  get = (): T => this.value

  set (next: T): void {
    if (this.equal(this.value, next)) return
    this.value = next
    for (const listener of [...this.listeners]) listener()
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }
}

/** Shallow equality of two plain objects, for values rebuilt from scratch on every change. */
export function shallowEqual<T extends object> (a: T, b: T): boolean {
  if (a === b) return true
  const keys = Object.keys(a) as Array<keyof T>
  if (keys.length !== Object.keys(b).length) return false
  return keys.every((key) => Object.is(a[key], b[key]))
}
