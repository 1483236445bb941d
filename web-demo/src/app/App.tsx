import { useState } from 'react'

import type { User } from '../tandem'
import { DocumentPage } from './DocumentPage'
import { Home } from './Home'
import { loadUser, saveUser } from './identity'
import { useRoute } from './route'

export function App () {
  const route = useRoute()
  const [user, setUser] = useState<User>(loadUser)
  const changeUser = (next: User): void => {
    saveUser(next)
    setUser(next)
  }
  if (route.page === 'document') {
    return <DocumentPage key={route.name} name={route.name} user={user} onUserChange={changeUser} />
  }
  return <Home user={user} onUserChange={changeUser} />
}
