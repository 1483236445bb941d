import { type FormEvent, useEffect, useState } from 'react'

import { type DocList, TandemApi, type User } from '../tandem'
import { Brand } from './Brand'
import { randomDocumentName, recentDocuments } from './identity'
import { documentHref, navigate } from './route'
import { UserEditor } from './UserEditor'
import { timeAgo } from './format'

const api = new TandemApi()

/** The landing page: open a document by name, a new one, a recent one or one on the server. */
export function Home ({ user, onUserChange }: { user: User, onUserChange: (user: User) => void }) {
  const [name, setName] = useState('')
  const [serverDocs, setServerDocs] = useState<DocList['documents'] | null>(null)
  const recent = recentDocuments()

  useEffect(() => {
    const abort = new AbortController()
    void api.listDocs(12, abort.signal).then((result) => {
      if (result.ok) setServerDocs(result.value.documents)
    })
    return () => { abort.abort() }
  }, [])

  const open = (event: FormEvent): void => {
    event.preventDefault()
    const trimmed = name.trim()
    if (trimmed !== '') navigate(documentHref(trimmed))
  }

  return (
    <div className='home'>
      <header className='home-header'>
        <Brand />
        <a className='muted-link' href='/openapi.json'>HTTP API</a>
      </header>
      <main className='home-main'>
        <section className='hero'>
          <h1>Write together, live.</h1>
          <p>
            Tandem is a realtime collaboration server for Yjs documents. Open a document, share its
            link and edit it with others: live cursors, presence, chat, and edits made offline that
            merge when you are back.
          </p>
          <form className='open-form' onSubmit={open}>
            <label className='visually-hidden' htmlFor='doc-name'>Document name</label>
            <input
              id='doc-name'
              value={name}
              onChange={(event) => { setName(event.target.value) }}
              placeholder='notes/2024/plan'
              autoComplete='off'
              spellCheck={false}
            />
            <button type='submit' className='primary' disabled={name.trim() === ''}>Open</button>
            <button type='button' onClick={() => { navigate(documentHref(randomDocumentName())) }}>
              New document
            </button>
          </form>
          <div className='identity-row'>
            <span className='muted'>You appear as</span>
            <UserEditor user={user} onChange={onUserChange} />
          </div>
        </section>
        <section className='doc-lists'>
          <DocList title='Recent on this device' empty='Documents you open show up here.'>
            {recent.map((doc) => <DocLink key={doc} name={doc} />)}
          </DocList>
          {serverDocs !== null && (
            <DocList title='On this server' empty='No documents yet: create the first one.'>
              {serverDocs.map((doc) => (
                <DocLink key={doc.name} name={doc.name} detail={
                  `${doc.peers > 0 ? `${doc.peers} here · ` : ''}${doc.lastChange !== null ? timeAgo(Date.parse(doc.lastChange)) : ''}`
                } />
              ))}
            </DocList>
          )}
        </section>
      </main>
    </div>
  )
}

function DocList ({ title, empty, children }: { title: string, empty: string, children: React.ReactNode[] }) {
  return (
    <div className='doc-list'>
      <h2>{title}</h2>
      {children.length === 0 ? <p className='muted'>{empty}</p> : <ul>{children}</ul>}
    </div>
  )
}

function DocLink ({ name, detail }: { name: string, detail?: string }) {
  const href = documentHref(name)
  return (
    <li>
      <a href={href} onClick={(event) => { event.preventDefault(); navigate(href) }}>
        <span className='doc-name'>{name}</span>
        {detail !== undefined && detail !== '' && <span className='muted small'>{detail}</span>}
      </a>
    </li>
  )
}
