import { useState } from 'react'

import { initials, type User } from '../tandem'
import { COLORS } from './identity'

/** The local user's name and colour, editable in place. */
export function UserEditor ({ user, onChange }: { user: User, onChange: (user: User) => void }) {
  const [draft, setDraft] = useState(user.name)
  const commit = (): void => {
    const name = draft.trim()
    if (name !== '' && name !== user.name) onChange({ ...user, name })
    else setDraft(user.name)
  }
  return (
    <div className='user-editor'>
      <span className='avatar small' style={{ background: user.color }} aria-hidden='true'>{initials(user.name)}</span>
      <input
        aria-label='Your name'
        className='name-input'
        value={draft}
        maxLength={40}
        onChange={(event) => { setDraft(event.target.value) }}
        onBlur={commit}
        onKeyDown={(event) => { if (event.key === 'Enter') event.currentTarget.blur() }}
      />
      <div className='swatches' role='radiogroup' aria-label='Your colour'>
        {COLORS.map((color) => (
          <button
            key={color}
            type='button'
            role='radio'
            aria-checked={color === user.color}
            aria-label={color}
            className={color === user.color ? 'swatch selected' : 'swatch'}
            style={{ background: color }}
            onClick={() => { onChange({ ...user, color }) }}
          />
        ))}
      </div>
    </div>
  )
}
