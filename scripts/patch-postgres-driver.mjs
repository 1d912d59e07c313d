// postinstall: small guards in postgres.js (porsager/postgres 3.4) for races between a
// connection's life and its close, each of which took the whole service down (or left a
// connection broken) whenever the database restarted. test/db/postgres-driver.test.ts checks
// them against the installed driver and a real server.
//
// 1. write-path: when a connection closes while a transaction is open, postgres.js still sends
//    the transaction's ROLLBACK on it; the write is scheduled with setImmediate and then
//    dereferences the closed (null) socket, an uncaught TypeError. The guard fails the pending
//    queries with CONNECTION_CLOSED instead.
// 2. type-fetch: every new connection first runs an internal query for the array types
//    (fetch_types), from an async function whose promise the driver drops. When the connection
//    dies before that query answers (PostgreSQL shutting down or restarting while the connection
//    is being opened), the query is failed and its rejection reaches no one: an unhandled
//    rejection (CONNECTION_CLOSED at Socket.closed, or 57P01), fatal for a process that treats
//    those as fatal. Its failure is already reported to the caller's query by the connection's
//    own error handling, so the guard drops it (upstream issues #1192, #1205, #1223).
// 3. reconnect: when a connection dies during that type fetch and the driver reconnects for the
//    caller's query, it kept the dead connection's query and error, failed the caller's query
//    with that old error on the new, healthy connection, and then skipped the type fetch there
//    (array parameters were sent unserialised). The guard fails the internal query and clears
//    both before reconnecting (upstream issue #1223).
// 4. reserve-retry (index.js): a reserve() whose connection failed stayed in the queue, and a
//    queued reserve was handed a connection before it was ready for it. The guards take a failed
//    reserve out of the queue and keep a reserve queued until a connection is ready.
// 5. no-delay: the driver left Nagle's algorithm on. A COPY ... FROM STDIN ends with two small
//    writes (the last CopyData, then CopyDone): the second waited for the server's delayed ACK,
//    ~40 ms on Linux, so every COPY took at least 40 ms and a one-row POST /v1/values ~95 ms.
//    The guard sets TCP_NODELAY once a connection is up (the driver already gathers the messages
//    of one tick into one write, so this does not multiply small packets).
// 6. copy-out-error: a COPY ... TO STDOUT that fails as it starts (CopyOutResponse, then the
//    error, in one read) destroys its stream with the error before the caller, which gets the
//    stream through a promise, can listen: the 'error' event found no listener and was thrown,
//    an uncaught exception. The guard gives the stream a listener that does nothing, so the
//    error stays in stream.errored, where db/copy-out.ts looks for it (test/db/copy-out.test.ts).
// 7. copy-out-resume: the driver pauses the socket while a COPY ... TO STDOUT stream's buffer is
//    full, and only the stream's reader resumes it. When the COPY ended (or failed) in the same
//    read, no reader came back: the connection never read its ReadyForQuery and its next query
//    waited forever (upstream issue #499, fix proposed in #1016). The guard resumes the socket
//    once the stream has its end or its error: what follows is no longer the stream's.
// 8. lifo (queue.js, index.js): an idle connection was taken from the front of the pool's queue,
//    the one idle longest, so that successive requests went round every connection. A PostgreSQL
//    backend is slow on its first touch of each page of shared memory (page faults, ~11 us each
//    on some virtual machines): a 1M-row training set took 1.2-1.8 s of PostgreSQL CPU on
//    connections new to it against 0.5-0.6 s on used ones. The guard takes the connection that
//    became idle last (as PgBouncer does by default), so requests meet warm backends and
//    connections left unused reach their idle timeout and close.
//
// Idempotent: a guard already present is left as it is; a file whose code has changed is left
// alone with a warning (then check the races by hand: run test/db/postgres-driver.test.ts).
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'postgres')

const GUARDS = [
  {
    name: 'write-path',
    original: '  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)',
    guarded: '  function nextWrite(fn) {\n    if (socket === null) { chunk = nextWriteTimer = null; error(Errors.connection(\'CONNECTION_CLOSED\', options)); return false } // feature-store guard\n    const x = socket.write(chunk, fn)',
  },
  {
    name: 'type-fetch',
    original: '        initial.reserve && (initial = null)\n        return fetchArrayTypes()\n',
    guarded: '        initial.reserve && (initial = null)\n        return fetchArrayTypes().catch(noop) // feature-store guard: failure reaches the caller through the connection\n',
  },
  {
    name: 'reconnect',
    original: '    if (initial)\n      return reconnect()\n\n    !hadError && (query || sent.length) && error(Errors.connection(\'CONNECTION_CLOSED\', options, socket))\n',
    guarded: '    if (initial) { // feature-store guard: no query or error of the dead connection survives into the next one\n      query && queryError(query, Errors.connection(\'CONNECTION_CLOSED\', options, socket))\n      query = errorResponse = null\n      return reconnect()\n    }\n\n    !hadError && (query || sent.length) && error(Errors.connection(\'CONNECTION_CLOSED\', options, socket))\n    query && queryError(query, Errors.connection(\'CONNECTION_CLOSED\', options, socket))\n    query = errorResponse = null // feature-store guard\n',
  },
  {
    name: 'no-delay',
    original: '      keep_alive && socket.setKeepAlive && socket.setKeepAlive(true, 1000 * keep_alive)\n',
    guarded: '      keep_alive && socket.setKeepAlive && socket.setKeepAlive(true, 1000 * keep_alive)\n      socket.setNoDelay && socket.setNoDelay(true) // feature-store guard: a COPY\'s last message is not held back by Nagle\'s algorithm\n',
  },
  {
    name: 'copy-out-error',
    original: '    stream = new Stream.Readable({\n      read() { socket.resume() }\n    })\n    query.resolve(stream)\n',
    guarded: '    stream = new Stream.Readable({\n      read() { socket.resume() }\n    })\n    stream.on(\'error\', noop) // feature-store guard: an error before the caller listens stays in stream.errored, not thrown\n    query.resolve(stream)\n',
  },
  {
    name: 'copy-out-resume',
    original: '  function CopyDone() {\n    stream && stream.push(null)\n    stream = null\n  }\n',
    guarded: '  function CopyDone() {\n    stream && stream.push(null)\n    stream = null\n    socket && socket.resume() // feature-store guard: the COPY is over, whether or not its reader reads on\n  }\n',
  },
  {
    name: 'copy-out-resume',
    original: '    stream && (stream.destroy(err), stream = null)\n',
    guarded: '    stream && (stream.destroy(err), stream = null, socket && socket.resume()) // feature-store guard: the COPY is over\n',
  },
  {
    name: 'reserve-retry',
    file: 'index.js',
    original: '        const query = { reserve: resolve, reject }\n',
    guarded: '        const query = { reserve: resolve, reject: e => (queries.remove(query), reject(e)) } // feature-store guard: a failed reserve leaves the queue\n',
  },
  {
    name: 'reserve-retry',
    file: 'index.js',
    original: '    queries.length && connect(c, queries.shift())\n  }\n',
    guarded: '    queries.length && connect(c, (q => (q.reserve && queries.push(q), q))(queries.shift())) // feature-store guard: a reserve stays queued until a connection is ready for it\n  }\n',
  },
  {
    name: 'lifo',
    file: 'queue.js',
    original: '    push: (x) => (xs.push(x), x),\n',
    guarded: '    push: (x) => (xs.push(x), x),\n    pop: () => { // feature-store guard: the last in, for the pool\'s idle connections\n      const out = xs.length > index ? xs.pop() : undefined\n      if (index === xs.length) { index = 0; xs = [] }\n      return out\n    },\n',
  },
  {
    name: 'lifo',
    file: 'index.js',
    original: '    const c = open.length\n      ? open.shift()\n',
    guarded: '    const c = open.length\n      ? open.pop() // feature-store guard: the connection idle the shortest (warm)\n',
  },
  {
    name: 'lifo',
    file: 'index.js',
    original: '    if (open.length)\n      return go(open.shift(), query)\n',
    guarded: '    if (open.length)\n      return go(open.pop(), query) // feature-store guard: the connection idle the shortest (warm)\n',
  },
]

for (const dir of ['src', 'cjs/src']) {
  for (const file of ['connection.js', 'index.js', 'queue.js']) {
    const p = path.join(root, dir, file)
    if (!existsSync(p)) continue
    let text = readFileSync(p, 'utf8')
    const applied = []
    for (const guard of GUARDS.filter((g) => (g.file ?? 'connection.js') === file)) {
      if (text.includes(guard.guarded)) continue
      const at = text.indexOf(guard.original)
      if (at < 0 || text.indexOf(guard.original, at + 1) >= 0) {
        console.warn(`postgres driver guard '${guard.name}': ${dir}/${file} has changed; not patched (check the race by hand: test/db/postgres-driver.test.ts)`)
        continue
      }
      text = text.replace(guard.original, guard.guarded)
      applied.push(guard.name)
    }
    if (applied.length > 0) {
      writeFileSync(p, text)
      console.log(`postgres driver guards applied to ${dir}/${file}: ${applied.join(', ')}`)
    }
  }
}
