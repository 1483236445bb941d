import { navigate } from './route'

export function Brand () {
  return (
    <a className='brand' href='/' onClick={(event) => { event.preventDefault(); navigate('/') }}>
      <svg viewBox='0 0 32 32' width='26' height='26' aria-hidden='true'>
        <rect width='32' height='32' rx='8' fill='#1e293b' />
        <circle cx='12' cy='16' r='6' fill='#38bdf8' />
        <circle cx='20' cy='16' r='6' fill='#f472b6' fillOpacity='.85' />
      </svg>
      <span>Tandem</span>
    </a>
  )
}
