"""pycrdt-websocket's server with its SQLite store, as bench/compare.sh runs it.

Run with: python pycrdt_server.py PORT DATA_DIR

Serves y-websocket on 127.0.0.1:PORT through hypercorn (ASGI); the room of a connection is its
path (with the leading "/"). Every update is appended to the SQLite store in DATA_DIR
(SQLiteYStore, pycrdt-store); a room's stored updates are applied when the room opens. Rooms
are dropped when their last client leaves (auto_clean_rooms). Stops on SIGTERM.
"""

import os
import sys

import anyio
from hypercorn.asyncio import serve
from hypercorn.config import Config
from pycrdt.store import SQLiteYStore, YDocNotFound
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python pycrdt_server.py PORT DATA_DIR")
    port, data_dir = int(sys.argv[1]), sys.argv[2]
    os.makedirs(data_dir, exist_ok=True)

    class Store(SQLiteYStore):
        db_path = os.path.join(data_dir, "ystore.db")

    class PersistentServer(WebsocketServer):
        """Gives every new room a store and loads what it holds before anyone syncs with it."""

        loading: dict[str, anyio.Event] = {}

        async def get_room(self, name: str) -> YRoom:
            if name in self.loading:
                with anyio.fail_after(10):
                    await self.loading[name].wait()
            if name not in self.rooms:
                self.loading[name] = loaded = anyio.Event()
                try:
                    room = YRoom(ready=False, ystore=Store(path=name), log=self.log)
                    self.rooms[name] = room
                    await self.start_room(room)
                    # The room starts its store in a task of its own.
                    with anyio.fail_after(10):
                        await room.ystore.started.wait()
                    try:
                        await room.ystore.apply_updates(room.ydoc)
                    except YDocNotFound:
                        pass
                    room.ready = True
                finally:
                    del self.loading[name]
                    loaded.set()
            room = self.rooms[name]
            await self.start_room(room)
            return room

    async def run() -> None:
        websocket_server = PersistentServer()
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.errorlog = "-"
        async with websocket_server:
            print(f"pycrdt-websocket listening on 127.0.0.1:{port}", flush=True)
            await serve(ASGIServer(websocket_server), config, mode="asgi")

    anyio.run(run)


if __name__ == "__main__":
    main()
