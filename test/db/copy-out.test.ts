import t from 'tap'
import { randomBytes } from 'node:crypto'
import { connect } from '../../db/connection.js'
import { COPY_SIGNATURE, oneBinaryField, readCopyOut } from '../../db/copy-out.js'
import { testAdminUrl } from '../lib/helper.js'

/**
 * db/copy-out.ts: one bytea read through a binary COPY (the drift check's fine bins), against a
 * real server. postgres.js left the socket paused when a COPY's data filled the stream's buffer
 * and the COPY ended in the same read (porsager/postgres#499): the connection's next query then
 * waited forever. A large row does that every time to a reader that lets the stream buffer (an
 * async iterator does; so does the join's reader while it yields a turn of the event loop).
 * A COPY that fails as it starts must fail the read, not the process. Both are driver guards
 * installed by scripts/patch-postgres-driver.mjs (copy-out-resume, copy-out-error).
 */

/** Fails instead of waiting forever. */
async function within<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

t.test('a large bytea comes back byte for byte, and the connection answers its next query', async (t) => {
  const sql = connect(testAdminUrl(), { max: 1 })
  t.teardown(async () => { await sql.end({ timeout: 1 }) })
  const conn = await sql.reserve()
  try {
    for (const size of [0, 1, 100_000, 3_000_000]) {
      const bytes = randomBytes(size)
      // the bytes go in through a parameter (COPY itself takes none) and come back through COPY
      await conn`BEGIN`
      await conn`CREATE TEMP TABLE copy_out_probe ON COMMIT DROP AS SELECT ${bytes}::bytea AS b`
      const data = await within(10_000, `COPY of ${size} bytes`, (async () => readCopyOut(await conn`COPY (SELECT b FROM copy_out_probe) TO STDOUT (FORMAT binary)`.readable()))())
      t.ok(oneBinaryField(data)?.equals(bytes), `${size} bytes read back as they were stored`)
      const [{ n }] = await within(10_000, `the query after a COPY of ${size} bytes`, conn<{ n: number }[]>`SELECT 1 AS n`)
      t.equal(n, 1, `the connection answers after a COPY of ${size} bytes`)
      await conn`ROLLBACK`
    }
    const read = async (query: string): Promise<Buffer> => readCopyOut(await conn.unsafe(query).readable())
    t.equal(oneBinaryField(await read('COPY (SELECT NULL::bytea) TO STDOUT (FORMAT binary)')), null, 'NULL: null')
    t.equal(oneBinaryField(await read('COPY (SELECT NULL::bytea WHERE false) TO STDOUT (FORMAT binary)')), null, 'no row: null')
    t.throws(() => oneBinaryField(COPY_SIGNATURE), /bad signature/, 'a truncated header is refused')
    const twoRows = await read("COPY (SELECT '\\x01'::bytea UNION ALL SELECT '\\x02'::bytea) TO STDOUT (FORMAT binary)")
    t.throws(() => oneBinaryField(twoRows), /more than one row/, 'a second row is refused')
    const twoFields = await read("COPY (SELECT '\\x01'::bytea, '\\x02'::bytea) TO STDOUT (FORMAT binary)")
    t.throws(() => oneBinaryField(twoFields), /2 fields/, 'a second field is refused')
    const text = await read("COPY (SELECT '\\x01'::bytea) TO STDOUT")
    t.throws(() => oneBinaryField(text), /bad signature/, 'the text format is refused')
    // an error while the COPY runs (after the server has started the copy) fails the read, and
    // the connection goes on
    await t.rejects(within(10_000, 'a failing COPY', read('COPY (SELECT int4send(1 / (g - 1)) FROM generate_series(1, 1) g) TO STDOUT (FORMAT binary)')), { code: '22012' }, 'the error reaches the reader')
    t.equal((await within(10_000, 'the query after a failed COPY', conn<{ n: number }[]>`SELECT 2 AS n`))[0].n, 2, 'the connection answers after a failed COPY')
  } finally {
    conn.release()
  }
})

t.test('a reader that lets the stream buffer leaves the connection usable too', async (t) => {
  const sql = connect(testAdminUrl(), { max: 1 })
  t.teardown(async () => { await sql.end({ timeout: 1 }) })
  const conn = await sql.reserve()
  try {
    const stream = await conn`COPY (SELECT decode(repeat('ab', 1000000), 'hex')) TO STDOUT (FORMAT binary)`.readable()
    // nothing read until the whole COPY has arrived: the stream's buffer fills meanwhile
    await new Promise((resolve) => setTimeout(resolve, 200))
    let bytes = 0
    for await (const chunk of stream) bytes += (chunk as Buffer).length
    t.ok(bytes > 1_000_000, 'the whole COPY read')
    const [{ n }] = await within(10_000, 'the query after a buffered COPY', conn<{ n: number }[]>`SELECT 3 AS n`)
    t.equal(n, 3, 'the connection answers its next query')
  } finally {
    conn.release()
  }
})
