// Tandem's HTTP API, for what a page cannot see from its own copy of the document: the
// server's view (size as stored, peers on every transport, last change), the document as JSON,
// the server's status. Every call answers a result instead of throwing, so a page can show
// what it has and say what it lacks (an older server without the API answers 404).

/** `GET /docs/{doc}`. */
export interface DocInfo {
  name: string
  size: number
  peers: number
  loaded: boolean
  /** RFC 3339 time of the last change, when the server knows it. */
  lastChange: string | null
}

/** `GET /status`. */
export interface ServerStatus {
  version: string
  uptimeSeconds: number
  connections: number
  peers: { websocket: number, sse: number, http: number }
  loadedDocuments: number
  storeBytes?: number
}

/** `GET /docs` (needs the admin right; anonymous servers grant it). */
export interface DocList {
  documents: Array<{ name: string, size: number, lastChange: string | null, loaded: boolean, peers: number }>
  nextCursor: string | null
}

export type ApiResult<T> =
  | { ok: true, value: T }
  /** `status` 0: the request did not get an answer. */
  | { ok: false, status: number, code: string | null, message: string }

export class TandemApi {
  /**
   * @param baseUrl the server's HTTP origin; default: the page's own.
   * @param token sent as `Authorization: Bearer` when given.
   */
  constructor (
    private readonly baseUrl = '',
    private readonly token?: string,
    private readonly fetchImpl: typeof fetch = (...args) => fetch(...args)
  ) {}

  docInfo (name: string, signal?: AbortSignal): Promise<ApiResult<DocInfo>> {
    return this.get(`/docs/${docSegment(name)}`, signal)
  }

  docJson (name: string, signal?: AbortSignal): Promise<ApiResult<Record<string, unknown>>> {
    return this.get(`/docs/${docSegment(name)}/json`, signal)
  }

  status (signal?: AbortSignal): Promise<ApiResult<ServerStatus>> {
    return this.get('/status', signal)
  }

  listDocs (limit = 20, signal?: AbortSignal): Promise<ApiResult<DocList>> {
    return this.get(`/docs?limit=${limit}`, signal)
  }

  private async get<T> (path: string, signal?: AbortSignal): Promise<ApiResult<T>> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`
    let response: Response
    try {
      response = await this.fetchImpl(`${this.baseUrl}${path}`, { headers, signal })
    } catch (error) {
      return { ok: false, status: 0, code: null, message: error instanceof Error ? error.message : String(error) }
    }
    let body: unknown = null
    try {
      body = await response.json()
    } catch {
      body = null
    }
    if (response.ok && body !== null) return { ok: true, value: body as T }
    const error = (body ?? {}) as { code?: unknown, message?: unknown }
    return {
      ok: false,
      status: response.status,
      code: typeof error.code === 'string' ? error.code : null,
      message: typeof error.message === 'string' ? error.message : response.statusText
    }
  }
}

/**
 * A document name as one path segment (`/` encoded too): the API recognises its endpoints by
 * the suffix before decoding, so a name ending in `/json` must not look like one.
 */
export function docSegment (name: string): string {
  return encodeURIComponent(name)
}
