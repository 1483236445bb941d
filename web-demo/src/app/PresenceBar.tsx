import { initials, type Peer } from '../tandem'

/** How many avatars show before the rest collapse into "+N". */
export const MAX_AVATARS = 5

function describe (peer: Peer): string {
  const notes = [peer.isLocal ? 'you' : null, peer.typing ? 'typing' : null, peer.idle ? 'idle' : null].filter((note) => note !== null)
  return notes.length > 0 ? `${peer.user.name} (${notes.join(', ')})` : peer.user.name
}

/** Who is here: initials in each person's colour, idle ones faded, typing ones marked. */
export function PresenceBar ({ peers }: { peers: Peer[] }) {
  const shown = peers.slice(0, MAX_AVATARS)
  const hidden = peers.slice(MAX_AVATARS)
  return (
    <div className='presence' aria-label={`${peers.length} here`} data-testid='presence'>
      <ul>
        {shown.map((peer) => (
          <li
            key={peer.clientId}
            className={['avatar', peer.idle ? 'idle' : '', peer.isLocal ? 'local' : ''].join(' ')}
            style={{ background: peer.user.color }}
            title={describe(peer)}
            data-name={peer.user.name}
          >
            {initials(peer.user.name)}
            {peer.typing && <span className='typing-dot' aria-hidden='true' />}
          </li>
        ))}
        {hidden.length > 0 && (
          <li className='avatar overflow' title={hidden.map(describe).join('\n')}>+{hidden.length}</li>
        )}
      </ul>
    </div>
  )
}

/** "Ada is typing…", "Ada and Grace are typing…", "3 people are typing…". */
export function typingLine (peers: Peer[]): string | null {
  const typing = peers.filter((peer) => peer.typing && !peer.isLocal).map((peer) => peer.user.name)
  if (typing.length === 0) return null
  if (typing.length === 1) return `${typing[0]} is typing…`
  if (typing.length === 2) return `${typing[0]} and ${typing[1]} are typing…`
  return `${typing.length} people are typing…`
}
