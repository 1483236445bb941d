import { useEffect, useState } from 'react'

import { type User, useConnectionStatus, useDocument, usePresence, useSyncState } from '../tandem'
import { Brand } from './Brand'
import { ChatPanel } from './ChatPanel'
import { ConnectionIndicator } from './ConnectionIndicator'
import { Editor } from './Editor'
import { rememberDocument } from './identity'
import { Inspector } from './Inspector'
import { OfflineBanner } from './OfflineBanner'
import { PresenceBar } from './PresenceBar'
import { UserEditor } from './UserEditor'

type Panel = 'chat' | 'inspector'

/** One document: the editor, who is here, the connection, chat and the inspector. */
export function DocumentPage ({ name, user, onUserChange }: { name: string, user: User, onUserChange: (user: User) => void }) {
  const live = useDocument({ name, user })
  const status = useConnectionStatus(live)
  const peers = usePresence(live)
  const sync = useSyncState(live)
  const [panel, setPanel] = useState<Panel>('chat')
  const [copied, setCopied] = useState(false)

  useEffect(() => { rememberDocument(name) }, [name])
  useEffect(() => { document.title = `${name} · Tandem` }, [name])
  useEffect(() => { live?.presence.setUser(user) }, [live, user])

  // Any interaction with the page counts as activity for the idle state.
  useEffect(() => {
    if (live === null) return
    let last = 0
    const onActivity = (): void => {
      const now = Date.now()
      if (now - last < 1000) return
      last = now
      live.presence.activity()
    }
    const kinds = ['pointermove', 'pointerdown', 'keydown', 'focus'] as const
    for (const kind of kinds) window.addEventListener(kind, onActivity, { passive: true })
    return () => { for (const kind of kinds) window.removeEventListener(kind, onActivity) }
  }, [live])

  const copyLink = (): void => {
    void navigator.clipboard?.writeText(window.location.href).then(() => {
      setCopied(true)
      setTimeout(() => { setCopied(false) }, 1500)
    }, () => {})
  }

  return (
    <div className='doc-page'>
      <header className='topbar'>
        <div className='topbar-left'>
          <Brand />
          <div className='doc-title'>
            <h1 title={name}>{name}</h1>
            <button type='button' className='ghost small' onClick={copyLink}>{copied ? 'Link copied' : 'Copy link'}</button>
          </div>
        </div>
        <div className='topbar-right'>
          <PresenceBar peers={peers} />
          <ConnectionIndicator
            status={status}
            onReconnect={() => { live?.reconnectNow() }}
            onGoOffline={() => { live?.goOffline() }}
          />
        </div>
      </header>
      <OfflineBanner status={status} unsynced={sync.unsyncedChanges} />
      <main className='workspace'>
        <section className='editor-pane'>
          {live !== null ? <Editor live={live} peers={peers} sync={sync} status={status} /> : <div className='editor-loading' />}
        </section>
        <aside className='side'>
          <div className='tabs' role='tablist'>
            <button role='tab' type='button' aria-selected={panel === 'chat'} onClick={() => { setPanel('chat') }}>Chat</button>
            <button role='tab' type='button' aria-selected={panel === 'inspector'} onClick={() => { setPanel('inspector') }}>Inspector</button>
          </div>
          <div className='tab-body'>
            {panel === 'chat'
              ? <ChatPanel live={live} user={user} />
              : <Inspector live={live} name={name} peers={peers} sync={sync} />}
          </div>
          <div className='side-footer'>
            <UserEditor user={user} onChange={onUserChange} />
          </div>
        </aside>
      </main>
    </div>
  )
}
