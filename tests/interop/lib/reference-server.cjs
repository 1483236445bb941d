#!/usr/bin/env node
// A stand-in for `tandem` built from y-websocket 1.x's own server code (bin/utils.js), behind
// tandem's command line and log interface, with simple file persistence. It exists to check the
// suite itself: `npm run test:reference` runs every test against it, and every test must pass,
// which shows the tests ask for the reference server's behaviour and nothing tandem-specific.
// (The "document unloaded" debug line imitates tandem's, for late-joiner.test.mjs.)
'use strict'
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const Y = require('yjs')
const WebSocket = require('ws')
const utils = require('y-websocket-v1/bin/utils')

const args = process.argv.slice(2)
if (args[0] === '--version') {
  console.log('tandem 0.0.0-reference')
  process.exit(0)
}
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt }
const addr = opt('--addr', '127.0.0.1:0')
const dataDir = opt('--data-dir', './tandem-data')
fs.mkdirSync(dataDir, { recursive: true })

const log = (level, fields) => console.log(JSON.stringify({ timestamp: new Date().toISOString(), level, fields, target: 'reference' }))
const fileOf = (name) => path.join(dataDir, name + '.ydoc')
const save = (name, doc) => fs.writeFileSync(fileOf(name), Y.encodeStateAsUpdate(doc))

utils.setPersistence({
  bindState: (name, doc) => {
    if (fs.existsSync(fileOf(name))) Y.applyUpdate(doc, fs.readFileSync(fileOf(name)))
  },
  // Called when the last connection to a document closed; the document is then dropped.
  writeState: async (name, doc) => {
    save(name, doc)
    log('DEBUG', { message: 'document unloaded' })
  }
})

const wss = new WebSocket.Server({ noServer: true })
const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/healthz' ? 200 : 404)
  res.end(req.url === '/healthz' ? 'ok' : '')
})
server.on('upgrade', (req, socket, head) => {
  const p = req.url.split('?')[0]
  if (!p.startsWith('/ws/')) return socket.destroy()
  // Percent-decode to bytes (which need not be UTF-8); the hex of the bytes is the document's key.
  const bytes = Buffer.from(p.slice('/ws/'.length).replace(/%([0-9a-fA-F]{2})|([^%]+)/g,
    (_, hex, text) => hex ? String.fromCharCode(parseInt(hex, 16)) : Buffer.from(text).toString('latin1')), 'latin1')
  const docName = bytes.toString('hex')
  wss.handleUpgrade(req, socket, head, (ws) => utils.setupWSConnection(ws, req, { docName }))
})
const colon = addr.lastIndexOf(':')
server.listen(Number(addr.slice(colon + 1)), addr.slice(0, colon), () => {
  log('INFO', { message: 'listening', addr: `${addr.slice(0, colon)}:${server.address().port}` })
})
process.on('SIGTERM', () => {
  for (const [name, doc] of utils.docs) save(name, doc)
  for (const ws of wss.clients) ws.terminate()
  server.close()
  process.exit(0)
})
