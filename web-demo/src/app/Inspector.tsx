import { useEffect, useState } from 'react'
import * as Y from 'yjs'

import { type ApiResult, type DocInfo, type Peer, type ServerStatus, type SyncState, TandemApi, type TandemDocument } from '../tandem'
import { bytes, timeAgo } from './format'

const api = new TandemApi()
const POLL_MS = 2000

interface ServerView {
  info: ApiResult<DocInfo> | null
  json: ApiResult<Record<string, unknown>> | null
  status: ApiResult<ServerStatus> | null
}

/** What the API answers for a document nobody wrote to. */
const NOT_STORED = { ok: false, status: 404, code: 'not_found', message: 'not found' } as const

/**
 * Polls the HTTP API while mounted. A document without any content locally has none on the
 * server either (once synced), so it is not asked for: its 404 would only add noise.
 */
function useServerView (name: string, live: TandemDocument | null): ServerView {
  const [view, setView] = useState<ServerView>({ info: null, json: null, status: null })
  useEffect(() => {
    const abort = new AbortController()
    let timer: ReturnType<typeof setTimeout> | undefined
    const poll = async (): Promise<void> => {
      const empty = live === null || Y.encodeStateVector(live.doc).byteLength <= 1
      const [info, json, status] = await Promise.all([
        empty ? NOT_STORED : api.docInfo(name, abort.signal),
        empty ? NOT_STORED : api.docJson(name, abort.signal),
        api.status(abort.signal)
      ])
      if (abort.signal.aborted) return
      setView({ info, json, status })
      timer = setTimeout(() => { void poll() }, POLL_MS)
    }
    void poll()
    return () => {
      abort.abort()
      clearTimeout(timer)
    }
  }, [name, live])
  return view
}

/** Recomputes `compute` every second (and when `live` changes). */
function useEverySecond<T> (compute: () => T, live: unknown): T {
  const [value, setValue] = useState(compute)
  useEffect(() => {
    setValue(compute)
    const timer = setInterval(() => { setValue(compute) }, 1000)
    return () => { clearInterval(timer) }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [live])
  return value
}

/** The document seen from here and from the server: sizes, peers, rates, latency, JSON. */
export function Inspector ({ live, name, peers, sync }: { live: TandemDocument | null, name: string, peers: Peer[], sync: SyncState }) {
  const server = useServerView(name, live)
  const local = useEverySecond(() => live === null
    ? null
    : { size: Y.encodeStateAsUpdate(live.doc).byteLength, json: live.doc.toJSON() }, live)

  const info = server.info
  const apiMissing = info !== null && !info.ok && (info.status === 404 && info.code !== 'not_found')
  const jsonFromServer = server.json?.ok === true ? server.json.value : null

  return (
    <div className='inspector' data-testid='inspector'>
      <section>
        <h3>On the server</h3>
        {info === null && <p className='muted small'>Asking the server…</p>}
        {info !== null && info.ok && (
          <dl>
            <dt>Stored size</dt><dd>{bytes(info.value.size)}</dd>
            <dt>Peers</dt><dd data-testid='server-peers'>{info.value.peers}</dd>
            <dt>Last change</dt><dd>{info.value.lastChange !== null ? timeAgo(Date.parse(info.value.lastChange)) : '—'}</dd>
            <dt>In memory</dt><dd>{info.value.loaded ? 'yes' : 'no'}</dd>
          </dl>
        )}
        {info !== null && !info.ok && (
          <p className='muted small'>
            {info.code === 'not_found'
              ? 'Nothing stored yet: the document exists on the server once someone writes to it.'
              : apiMissing
                ? 'This server has no HTTP API: showing what this browser knows.'
                : `The HTTP API did not answer (${info.status === 0 ? info.message : `${info.status} ${info.message}`}).`}
          </p>
        )}
        {server.status?.ok === true && (
          <p className='muted small'>
            Tandem {server.status.value.version} · up {formatUptime(server.status.value.uptimeSeconds)} ·{' '}
            {server.status.value.connections} connections · {server.status.value.loadedDocuments} documents loaded
          </p>
        )}
      </section>
      <section>
        <h3>In this browser</h3>
        <dl>
          <dt>Encoded state</dt><dd>{local !== null ? bytes(local.size) : '—'}</dd>
          <dt>People here</dt><dd data-testid='local-peers'>{peers.length}</dd>
          <dt>Updates</dt><dd>{sync.updatesPerSecond.toFixed(1)}/s · {sync.updatesSent} sent · {sync.updatesReceived} received</dd>
          <dt>Round trip</dt><dd data-testid='latency'>{sync.latencyMs !== null ? `${sync.latencyMs} ms` : '—'}</dd>
          <dt>Not on the server</dt><dd>{sync.unsyncedChanges} {sync.unsyncedChanges === 1 ? 'change' : 'changes'}</dd>
        </dl>
      </section>
      <section>
        <h3>Document as JSON <span className='muted small'>{jsonFromServer !== null ? 'GET /docs/{doc}/json' : 'computed in this browser'}</span></h3>
        <pre className='json' data-testid='json'>{JSON.stringify(jsonFromServer ?? local?.json ?? {}, null, 2)}</pre>
      </section>
    </div>
  )
}

function formatUptime (seconds: number): string {
  if (seconds < 60) return `${Math.floor(seconds)} s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`
}
