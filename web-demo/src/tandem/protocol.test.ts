import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'

import { serverEvent, serverStep1, serverSync } from './fake-socket'
import { defaultServerUrl, documentPath, encodeEvent, encodeSyncStep1, readFrame } from './protocol'

describe('readFrame', () => {
  it('reads the sync sub-types with their updates', () => {
    const doc = new Y.Doc()
    doc.getText('text').insert(0, 'hi')
    const update = Y.encodeStateAsUpdate(doc)
    expect(readFrame(serverStep1(doc))).toEqual({ kind: 'sync-step1' })
    expect(readFrame(encodeSyncStep1(doc))).toEqual({ kind: 'sync-step1' })
    expect(readFrame(serverSync(update, 1))).toEqual({ kind: 'sync-step2', update })
    expect(readFrame(serverSync(update, 2))).toEqual({ kind: 'update', update })
  })

  it('reads custom events and leaves the rest to y-websocket', () => {
    expect(readFrame(serverEvent({ ack: 3 }))).toEqual({ kind: 'event', json: '{"ack":3}' })
    expect(readFrame(encodeEvent({ since: 0 }))).toEqual({ kind: 'event', json: '{"since":0}' })
    expect(readFrame(new Uint8Array([1, 0]))).toEqual({ kind: 'awareness' })
    expect(readFrame(new Uint8Array([2, 0]))).toEqual({ kind: 'other' })
    expect(readFrame(new Uint8Array([0, 9]))).toEqual({ kind: 'other' })
    expect(readFrame(new Uint8Array([]))).toEqual({ kind: 'other' })
    expect(readFrame(new Uint8Array([0, 1, 200]))).toEqual({ kind: 'other' })
  })
})

describe('documentPath', () => {
  it('keeps slashes and encodes everything else that a URL would misread', () => {
    expect(documentPath('notes/2024/plan')).toBe('notes/2024/plan')
    expect(documentPath('a b?c#d')).toBe('a%20b%3Fc%23d')
    expect(documentPath('é 😀')).toBe('%C3%A9%20%F0%9F%98%80')
    expect(documentPath('100%')).toBe('100%25')
  })
})

describe('defaultServerUrl', () => {
  it('follows the page: ws for http, wss for https', () => {
    expect(defaultServerUrl({ protocol: 'http:', host: '127.0.0.1:4455' })).toBe('ws://127.0.0.1:4455/ws')
    expect(defaultServerUrl({ protocol: 'https:', host: 'tandem.example' })).toBe('wss://tandem.example/ws')
  })
})
