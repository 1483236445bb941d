import { type FormEvent, useEffect, useRef, useState } from 'react'

import { type EventEntry, isGap, type TandemDocument, type TandemEvent, type User, useEvents } from '../tandem'
import { clock } from './format'

/** What a chat message carries: its id makes resends harmless; name and colour show who. */
interface ChatMessage {
  id: string
  text: string
  name: string
  color: string
}

function isChat (entry: EventEntry): entry is TandemEvent<ChatMessage> {
  if (isGap(entry) || entry.type !== 'chat') return false
  const data = entry.data as Partial<ChatMessage> | null
  return typeof data?.text === 'string' && typeof data.name === 'string'
}

function newId (): string {
  return typeof crypto.randomUUID === 'function'
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`
}

/** Chat beside the document, through Tandem's custom events: history for newcomers included. */
export function ChatPanel ({ live, user }: { live: TandemDocument | null, user: User }) {
  const { entries, emit } = useEvents(live)
  const [text, setText] = useState('')
  const list = useRef<HTMLOListElement>(null)
  const shown = entries.filter((entry) => isGap(entry) || isChat(entry))

  useEffect(() => {
    const element = list.current
    if (element !== null) element.scrollTop = element.scrollHeight
  }, [shown.length])

  const send = (event: FormEvent): void => {
    event.preventDefault()
    const trimmed = text.trim()
    if (trimmed === '') return
    emit<ChatMessage>('chat', { id: newId(), text: trimmed.slice(0, 2000), name: user.name, color: user.color })
    setText('')
  }

  return (
    <div className='chat'>
      <ol className='messages' ref={list} data-testid='chat-messages'>
        {shown.length === 0 && <li className='muted empty'>No messages yet. Say hello: everyone who opens this document sees the conversation.</li>}
        {shown.map((entry, index) => isGap(entry)
          ? <li key={`gap-${index}`} className='gap muted small'>Earlier messages are no longer kept</li>
          : <Message key={entry.seq ?? `pending-${(entry.data as ChatMessage).id}`} event={entry as TandemEvent<ChatMessage>} />)}
      </ol>
      <form className='chat-form' onSubmit={send}>
        <label className='visually-hidden' htmlFor='chat-input'>Message</label>
        <input
          id='chat-input'
          value={text}
          maxLength={2000}
          onChange={(event) => { setText(event.target.value) }}
          placeholder='Message everyone here'
          autoComplete='off'
        />
        <button type='submit' className='primary' disabled={text.trim() === '' || live === null}>Send</button>
      </form>
    </div>
  )
}

function Message ({ event }: { event: TandemEvent<ChatMessage> }) {
  const { name, color, text } = event.data
  return (
    <li className={event.own ? 'message own' : 'message'} data-testid='chat-message'>
      <div className='message-head'>
        <span className='dot' style={{ background: color }} aria-hidden='true' />
        <strong>{event.own ? `${name} (you)` : name}</strong>
        <span className='muted small'>{event.seq === null ? 'sending…' : clock(event.at)}</span>
      </div>
      <p>{text}</p>
    </li>
  )
}
