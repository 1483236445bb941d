import { describe, expect, it } from 'vitest'

import { documentHref, parseRoute } from './route'

describe('routes', () => {
  it('round-trips document names through the URL', () => {
    for (const name of ['notes', 'notes/2024/plan', 'a b?c#d', 'é 😀', '100%', 'x%2Fy']) {
      expect(parseRoute(documentHref(name))).toEqual({ page: 'document', name })
    }
  })

  it('sends anything else home', () => {
    expect(parseRoute('/')).toEqual({ page: 'home' })
    expect(parseRoute('/d/')).toEqual({ page: 'home' })
    expect(parseRoute('/elsewhere')).toEqual({ page: 'home' })
    expect(parseRoute('/d/%E0%A4%A')).toEqual({ page: 'home' })
  })
})
