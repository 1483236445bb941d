// The ESM client stack: one `yjs` instance shared by y-websocket 1.x, 2.x and 3.x.
//
// All three majors are imported through their ESM entry (`exports["."].import`, i.e.
// `src/y-websocket.js`): that is the build bundlers give browsers, and it makes all three use the
// same `yjs`, `lib0` and `y-protocols` module instances as this file. (y-websocket 1.x's package is
// not `"type": "module"`, so Node loads that ESM source through module syntax detection, on by
// default since Node 20.19.) The 1.x CommonJS build (`dist/y-websocket.cjs` + yjs CJS) is covered
// separately by v1-cjs.test.mjs, in its own process so the two yjs builds never meet.

import * as Y from 'yjs'
import { WebsocketProvider as ProviderV1 } from 'y-websocket-v1'
import { WebsocketProvider as ProviderV2 } from 'y-websocket-v2'
import { WebsocketProvider as ProviderV3 } from 'y-websocket-v3'

export { Y }

/** @type {Record<'v1' | 'v2' | 'v3', { Y: typeof Y, Provider: any, version: string }>} */
export const STACKS = {
  v1: { Y, Provider: ProviderV1, version: 'v1' },
  v2: { Y, Provider: ProviderV2, version: 'v2' },
  v3: { Y, Provider: ProviderV3, version: 'v3' }
}

export const VERSIONS = /** @type {const} */ (['v1', 'v2', 'v3'])
