import { useEffect, useState } from 'react'

import type { ConnectionStatus } from '../tandem'

/** Re-renders every `ms` while `active`, for countdowns. */
function useNow (active: boolean, ms = 250): number {
  const [now, setNow] = useState(Date.now)
  useEffect(() => {
    if (!active) return
    const timer = setInterval(() => { setNow(Date.now()) }, ms)
    return () => { clearInterval(timer) }
  }, [active, ms])
  return now
}

function label (status: ConnectionStatus, now: number): { title: string, detail: string | null } {
  switch (status.state) {
    case 'connecting':
      return { title: 'Connecting…', detail: null }
    case 'connected':
      return { title: status.synced ? 'Connected' : 'Syncing…', detail: null }
    case 'reconnecting': {
      const attempt = `attempt ${status.attempt + 1}`
      if (status.nextRetryAt === null) return { title: 'Reconnecting…', detail: attempt }
      const seconds = Math.max(0, Math.ceil((status.nextRetryAt - now) / 1000))
      return { title: 'Reconnecting', detail: `${attempt} in ${seconds} s` }
    }
    case 'offline':
      return { title: 'Offline', detail: status.reason }
  }
}

/** The connection's state, with a button to reconnect at once (or to work offline). */
export function ConnectionIndicator ({ status, onReconnect, onGoOffline }: {
  status: ConnectionStatus
  onReconnect: () => void
  onGoOffline: () => void
}) {
  const now = useNow(status.nextRetryAt !== null)
  const { title, detail } = label(status, now)
  const connected = status.state === 'connected'
  return (
    <div className={`connection ${status.state}`} data-testid='connection' data-state={status.state} role='status'>
      <span className='connection-dot' aria-hidden='true' />
      <span className='connection-text'>
        <strong>{title}</strong>
        {detail !== null && <span className='connection-detail'>{detail}</span>}
      </span>
      {connected
        ? <button type='button' className='ghost small' onClick={onGoOffline} title='Disconnect and keep editing offline'>Go offline</button>
        : <button type='button' className='small' onClick={onReconnect}>Reconnect now</button>}
    </div>
  )
}
