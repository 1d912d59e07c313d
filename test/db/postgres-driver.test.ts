import t, { type Test } from 'tap'
import net from 'node:net'
import { connect } from '../../db/connection.js'
import { testAdminUrl } from '../lib/helper.js'

/**
 * The guards that scripts/patch-postgres-driver.mjs puts into postgres.js (run at install),
 * checked against the real driver and a real server. A TCP proxy in front of the test server
 * ends a new connection at the moments the driver mishandled:
 * - right after its start-up (the server's ReadyForQuery and its FATAL 57P01 in one packet, as
 *   when PostgreSQL shuts down while the connection is being opened; a loaded machine makes
 *   it likely): the driver's internal array-type query was then sent on a dead connection and
 *   its failure escaped as an unhandled rejection (CONNECTION_CLOSED at Socket.closed);
 * - during that array-type query: the driver reconnected, but kept the dead connection's error
 *   and failed the caller's query with it on the new, healthy connection (and again escaped
 *   an unhandled rejection).
 */

const FATAL_57P01 = errorResponse('FATAL', '57P01', 'terminating connection due to administrator command')

function errorResponse (severity: string, code: string, message: string): Buffer {
  const fields = Buffer.from(`S${severity}\0V${severity}\0C${code}\0M${message}\0\0`, 'utf8')
  const head = Buffer.alloc(5)
  head.write('E', 0, 'ascii')
  head.writeUInt32BE(4 + fields.length, 1)
  return Buffer.concat([head, fields])
}

type Cut = 'after-startup' | 'during-type-fetch'

/** A proxy that cuts the first connection it carries at `cut`; later ones pass untouched. */
async function startProxy (target: URL, cut: Cut): Promise<{ url: string, cuts: () => number, close: () => Promise<void> }> {
  let pending = 1
  let cuts = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const up = net.connect(Number(target.port), target.hostname)
    sockets.add(client); sockets.add(up)
    const armed = pending > 0
    if (armed) pending--
    let done = false
    const kill = (last: Buffer): void => {
      done = true
      cuts++
      up.destroy()
      client.end(last)
    }
    let fromServer = Buffer.alloc(0)
    up.on('data', (chunk: Buffer) => {
      if (done) return
      if (!armed || cut !== 'after-startup') { client.write(chunk); return }
      // frame the server's messages: hold back until the first ReadyForQuery ('Z')
      fromServer = Buffer.concat([fromServer, chunk])
      let at = 0
      while (fromServer.length - at >= 5) {
        const len = fromServer.readUInt32BE(at + 1)
        if (fromServer.length - at < len + 1) break
        const type = String.fromCharCode(fromServer[at])
        at += len + 1
        if (type === 'Z') { kill(Buffer.concat([fromServer.subarray(0, at), FATAL_57P01])); return }
      }
      client.write(fromServer.subarray(0, at))
      fromServer = fromServer.subarray(at)
    })
    client.on('data', (chunk: Buffer) => {
      if (done) return
      if (armed && cut === 'during-type-fetch' && chunk.includes('typarray')) { kill(FATAL_57P01); return }
      up.write(chunk)
    })
    for (const [a, b] of [[client, up], [up, client]] as const) {
      a.on('error', () => b.destroy())
      a.on('close', () => { sockets.delete(a); if (!done) b.end() })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = new URL(target)
  url.port = String((server.address() as net.AddressInfo).port)
  return {
    url: url.toString(),
    cuts: () => cuts,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** Collects unhandled rejections while `fn` runs and a moment after. */
async function unhandledDuring (fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = []
  const onRejection = (reason: unknown): void => { seen.push(reason) }
  process.on('unhandledRejection', onRejection)
  try {
    await fn()
    await new Promise((resolve) => setTimeout(resolve, 300))
  } finally {
    process.off('unhandledRejection', onRejection)
  }
  return seen
}

const describe = (errs: unknown[]): string => JSON.stringify(errs.map((e) => `${(e as { code?: string }).code}: ${(e as Error).message}`))

/** A one-connection pool through a proxy that cuts the connection at `cut`; both closed at the test's end. */
async function proxiedPool (t: Test, cut: Cut): Promise<{ sql: ReturnType<typeof connect>, proxy: Awaited<ReturnType<typeof startProxy>> }> {
  const proxy = await startProxy(new URL(testAdminUrl()), cut)
  t.teardown(() => proxy.close())
  const sql = connect(proxy.url, { max: 1 })
  t.teardown(() => sql.end({ timeout: 1 }))
  return { sql, proxy }
}

t.test('a connection terminated right after its start-up: the query fails, nothing escapes, the pool goes on', async (t) => {
  const { sql, proxy } = await proxiedPool(t, 'after-startup')
  let failure: { code?: string } | undefined
  const unhandled = await unhandledDuring(async () => {
    failure = await sql`SELECT 1 AS one`.then(() => undefined, (err: { code?: string }) => err)
  })
  t.equal(proxy.cuts(), 1, 'the connection was cut')
  t.same(unhandled, [], `no unhandled rejection ${describe(unhandled)}`)
  t.ok(failure, 'the query failed')
  t.ok(['57P01', 'CONNECTION_CLOSED'].includes(failure?.code ?? ''), `with the connection's error (${failure?.code})`)
  const [row] = await sql<{ one: number }[]>`SELECT 1 AS one`
  t.equal(row.one, 1, 'the next query gets a new connection')
})

t.test('a connection terminated during the array-type fetch: the query is retried on a new connection and succeeds', async (t) => {
  const { sql, proxy } = await proxiedPool(t, 'during-type-fetch')
  let answer: unknown
  const unhandled = await unhandledDuring(async () => {
    answer = await sql<{ one: number }[]>`SELECT 1 AS one`.then((rows) => rows[0].one, (err: { code?: string }) => `rejected: ${err.code}`)
  })
  t.equal(proxy.cuts(), 1, 'the connection was cut')
  t.same(unhandled, [], `no unhandled rejection ${describe(unhandled)}`)
  t.equal(answer, 1, 'not failed with the dead connection\'s error')
  const [row] = await sql<{ one: number[] }[]>`SELECT ${[1, 2]}::int4[] AS one`
  t.same(row.one, [1, 2], 'array types work on the new connection')
})

t.test('a reserved connection cut during the array-type fetch: reserve() gets a new connection, neither hangs nor fails', async (t) => {
  const { sql, proxy } = await proxiedPool(t, 'during-type-fetch')
  let answer: unknown
  const unhandled = await unhandledDuring(async () => {
    answer = await Promise.race([
      sql.reserve().then(async (conn) => {
        try {
          const [row] = await conn<{ one: number[] }[]>`SELECT ${[1, 2]}::int4[] AS one`
          return row.one
        } finally { conn.release() }
      }, (err: { code?: string }) => `rejected: ${err.code}`),
      new Promise((resolve) => setTimeout(() => resolve('still waiting after 10 s'), 10_000)),
    ])
  })
  t.equal(proxy.cuts(), 1, 'the connection was cut')
  t.same(unhandled, [], `no unhandled rejection ${describe(unhandled)}`)
  t.same(answer, [1, 2], 'reserved, with array types, on the new connection')
})

t.test('a reserve that cannot connect is rejected and leaves nothing behind', async (t) => {
  const target = new URL(testAdminUrl())
  const nowhere = new URL(target)
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  nowhere.port = String((probe.address() as net.AddressInfo).port)
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const sql = connect(nowhere.toString(), { max: 1 })
  t.teardown(() => sql.end({ timeout: 1 }))
  const failed = await sql.reserve().then(() => 'reserved', (err: { code?: string }) => err.code)
  t.equal(failed, 'ECONNREFUSED')
  const ended = await Promise.race([sql.end({ timeout: 5 }).then(() => 'ended'), new Promise((resolve) => setTimeout(() => resolve('end hung'), 8000))])
  t.equal(ended, 'ended', 'no reconnect loop keeps the pool busy')
})

t.test('connections send without Nagle\'s delay (TCP_NODELAY), so a COPY\'s closing message goes out at once', async (t) => {
  // With Nagle's algorithm on, the CopyDone that follows a COPY's last CopyData waited for the
  // server's delayed ACK (~40 ms on Linux): every COPY, and so every ingest, paid it.
  const calls: unknown[] = []
  const original = net.Socket.prototype.setNoDelay
  net.Socket.prototype.setNoDelay = function (this: net.Socket, ...args: Parameters<typeof original>) {
    calls.push(args[0])
    return original.apply(this, args)
  }
  t.teardown(() => { net.Socket.prototype.setNoDelay = original })
  const sql = connect(testAdminUrl(), { max: 1 })
  t.teardown(() => sql.end({ timeout: 1 }))
  await sql.begin(async (tx) => {
    await tx`CREATE TEMP TABLE copied (x int4) ON COMMIT DROP`
    const writable = await tx`COPY copied (x) FROM STDIN`.writable()
    await new Promise<void>((resolve, reject) => { writable.on('error', reject); writable.end('1\n2\n', () => resolve()) })
    const [{ n }] = await tx<{ n: number }[]>`SELECT count(*)::int AS n FROM copied`
    t.equal(n, 2, 'the COPY wrote its rows')
  })
  t.ok(calls.includes(true), 'the driver set TCP_NODELAY on its connection')
})

t.test('the pool hands out the connection that became idle last (warm backends), for queries and reserve()', async (t) => {
  const sql = connect(testAdminUrl(), { max: 3 })
  t.teardown(() => sql.end({ timeout: 1 }))
  // three connections open at once
  const opened = await Promise.all([0, 1, 2].map(async () => (await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid, pg_sleep(0.2)`)[0].pid))
  t.equal(new Set(opened).size, 3, 'three backends')
  // one after the other, every query goes to the same (the last idle) connection
  const pids: number[] = []
  for (let i = 0; i < 6; i++) pids.push((await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0].pid)
  t.equal(new Set(pids).size, 1, `sequential queries on one backend (${pids.join(', ')})`)
  // a reserved connection is the one used last; released, it is the next one used again
  const conn = await sql.reserve()
  const [{ pid: reservedPid }] = await conn<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`
  t.equal(reservedPid, pids[0], 'reserve() takes the warm connection')
  const other = (await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0].pid
  t.not(other, reservedPid, 'while reserved, queries go elsewhere')
  conn.release()
  const [{ pid: after }] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`
  t.equal(after, reservedPid, 'released last, used first')
  // two reserved at once, released in turn: the later release is taken first
  const [a, b] = await Promise.all([sql.reserve(), sql.reserve()])
  const pa = (await a<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0].pid
  const pb = (await b<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0].pid
  a.release()
  b.release()
  const [c, d] = [await sql.reserve(), await sql.reserve()]
  t.same([(await c<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0].pid, (await d<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0].pid], [pb, pa], 'last released, first reserved')
  c.release()
  d.release()
})
