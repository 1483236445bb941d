import { render, screen } from '@testing-library/react'
import { describe, expect, it } from 'vitest'

import type { Peer } from '../tandem'
import { MAX_AVATARS, PresenceBar, typingLine } from './PresenceBar'

function peer (clientId: number, name: string, extra: Partial<Peer> = {}): Peer {
  return { clientId, user: { name, color: '#2563eb' }, isLocal: false, idle: false, typing: false, ...extra }
}

describe('PresenceBar', () => {
  it('shows initials, marks idle and typing people, and folds the rest into +N', () => {
    const peers = [
      peer(1, 'Ada Lovelace', { isLocal: true }),
      peer(2, 'Grace Hopper', { idle: true }),
      peer(3, 'Alan Turing', { typing: true }),
      ...[4, 5, 6, 7, 8].map((id) => peer(id, `Guest ${id}`))
    ]
    render(<PresenceBar peers={peers} />)
    const avatars = screen.getByTestId('presence').querySelectorAll('li')
    expect(avatars).toHaveLength(MAX_AVATARS + 1)
    expect(avatars[0].textContent).toBe('AL')
    expect(avatars[0].getAttribute('title')).toBe('Ada Lovelace (you)')
    expect(avatars[1].className).toContain('idle')
    expect(avatars[1].getAttribute('title')).toBe('Grace Hopper (idle)')
    expect(avatars[2].querySelector('.typing-dot')).not.toBeNull()
    expect(avatars[MAX_AVATARS].textContent).toBe('+3')
    expect(avatars[MAX_AVATARS].getAttribute('title')).toBe('Guest 6\nGuest 7\nGuest 8')
  })

  it('says who is typing, never the local user', () => {
    expect(typingLine([peer(1, 'Me', { isLocal: true, typing: true })])).toBeNull()
    expect(typingLine([peer(2, 'Ada', { typing: true })])).toBe('Ada is typing…')
    expect(typingLine([peer(2, 'Ada', { typing: true }), peer(3, 'Grace', { typing: true })])).toBe('Ada and Grace are typing…')
    expect(typingLine([2, 3, 4].map((id) => peer(id, `P${id}`, { typing: true })))).toBe('3 people are typing…')
  })
})
