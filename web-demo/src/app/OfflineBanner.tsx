import type { ConnectionStatus } from '../tandem'

/** While not connected: edits are kept, and how many are not on the server yet. */
export function OfflineBanner ({ status, unsynced }: { status: ConnectionStatus, unsynced: number }) {
  if (status.state === 'connected' || (status.state === 'connecting' && unsynced === 0)) return null
  const changes = unsynced === 1 ? '1 local change is' : `${unsynced} local changes are`
  return (
    <div className='banner' role='alert' data-testid='offline-banner' data-unsynced={unsynced}>
      {unsynced > 0
        ? <span><strong>{changes} not on the server yet.</strong> They are kept in this tab and merge with everyone's edits when the connection returns.</span>
        : <span><strong>Not connected.</strong> Keep editing: your changes are kept and merge when the connection returns.</span>}
    </div>
  )
}
