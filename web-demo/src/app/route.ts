// The demo's two pages: `/` (pick a document) and `/d/{document}` (edit it). The document name
// is in the path, each part percent-encoded, so a link opens the same document.

import { useEffect, useState } from 'react'

import { documentPath } from '../tandem'

export type Route = { page: 'home' } | { page: 'document', name: string }

const PREFIX = '/d/'

export function parseRoute (pathname: string): Route {
  if (!pathname.startsWith(PREFIX) || pathname.length === PREFIX.length) return { page: 'home' }
  try {
    const name = pathname.slice(PREFIX.length).split('/').map(decodeURIComponent).join('/')
    return { page: 'document', name }
  } catch {
    return { page: 'home' }
  }
}

export function documentHref (name: string): string {
  return PREFIX + documentPath(name)
}

export function navigate (href: string): void {
  window.history.pushState(null, '', href)
  window.dispatchEvent(new PopStateEvent('popstate'))
}

export function useRoute (): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.pathname))
  useEffect(() => {
    const onChange = (): void => { setRoute(parseRoute(window.location.pathname)) }
    window.addEventListener('popstate', onChange)
    return () => { window.removeEventListener('popstate', onChange) }
  }, [])
  return route
}
