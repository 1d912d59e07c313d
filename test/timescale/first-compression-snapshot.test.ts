import t from 'tap'
import { compressedHourlyDays, DAY, DAYS, H, T0 } from '../lib/compressed-days.js'
import { appendValues, type RawValue } from '../lib/fixtures.js'
import { connect } from '../../db/connection.js'
import { soundCutoff } from '../../db/knowledge.js'
import type { BlockAnswers } from '../../src/domain/training-output.js'
import { joinPointInTime } from '../../src/services/training-sets.js'
import { onlyIn } from '../lib/test-server-mode.js'

/**
 * A chunk made after a point-in-time read took its snapshot is not covered by the read's lock
 * (db/point-in-time.ts lockAgainstChunkRewrites locks the chunks that exist), so its first
 * compression can run during the read. A first compression writes its batches frozen: every
 * snapshot sees them, the read's too, although they were written after it began. What keeps
 * them out of the answers is the knowledge cutoff: they were ingested after it, and every read
 * filters ingested_at <= cutoff. Shown here: the read's snapshot does see the frozen rows, and
 * the training set read across the compression answers as a calm read does.
 */
t.test('values written and compressed into a new chunk during a read stay out of it: frozen but after the cutoff', await onlyIn('timescaledb'), async (t) => {
  const { sql, url, f, features } = await compressedHourlyDays(t)
  // rows in the stored days, then rows two to four days after the last value (no chunk there):
  // answered by the last stored value, 23:00 of the last day; four rows per block
  const times = [
    ...Array.from({ length: 8 }, (_, i) => T0 + i * 17 * H + 30 * 60_000),
    ...Array.from({ length: 8 }, (_, i) => T0 + (DAYS + 2) * DAY + i * 6 * H),
  ]
  const source = { count: times.length, entityAt: () => 'BTC', timeAt: (i: number) => times[i], extraAt: () => ({}) }
  const rowsOf = (blocks: BlockAnswers[]): unknown[] => blocks.flatMap((a) => Array.from({ length: a.block.size }, (_, r) => [a.value(r, 0), a.answerTime(r, 0)]))
  const last = DAYS * 24 - 1
  const expected = times.map((T) => {
    const h = Math.min(last, Math.floor((T - T0) / H))
    return [h, T0 + h * H]
  })

  const other = connect(url, { max: 1 })
  t.teardown(async () => { await other.end({ timeout: 1 }) })
  for (const bounded of [undefined, { lookbackMs: 7 * DAY }]) {
    const label = bounded ? 'bounded reads' : 'direct reads'
    const k = await soundCutoff(sql)
    const calm: BlockAnswers[] = []
    for await (const { answers } of joinPointInTime(sql, features, source, 'event', k, 4, 1, { boundedReads: bounded })) calm.push(answers)
    t.same(rowsOf(calm), expected, `${label}: a calm read`)

    // after block 0 was read, values are written into a day with no chunk yet (before the rows
    // of blocks 2 and 3, after the last stored value), and that new chunk is compressed
    const day = DAYS + 1
    const late: RawValue[] = Array.from({ length: 6 }, (_, i) => ({ featureId: f, entityId: 'BTC', eventTimeMs: T0 + day * DAY + i * H, num: 1000 + i }))
    const busy: BlockAnswers[] = []
    let compressed = 'not tried'
    let seenBySnapshot = -1
    const observer = connect(url, { max: 1 })
    const snapshotReader = await observer.reserve()
    await snapshotReader`BEGIN ISOLATION LEVEL REPEATABLE READ`
    await snapshotReader`SELECT count(*) FROM feature_snapshots WHERE feature_id = ${f}` // takes the snapshot
    const hooks = {
      boundedReads: bounded,
      beforeRead: async (b: number) => {
        if (b !== 1) return
        await appendValues(other, late)
        compressed = await other`
          SELECT compress_chunk(c) FROM show_chunks('feature_snapshots', newer_than => ${new Date(T0 + day * DAY).toISOString()}::timestamptz) c`
          .then((rows) => `done (${rows.length} chunk)`, (err: Error & { code?: string }) => `refused (${err.code ?? ''} ${err.message})`)
        const [{ n }] = await snapshotReader<{ n: number }[]>`
          SELECT count(*)::int AS n FROM feature_snapshots WHERE feature_id = ${f} AND event_time >= ${new Date(T0 + day * DAY).toISOString()}::timestamptz`
        seenBySnapshot = n
      },
    }
    try {
      for await (const { answers } of joinPointInTime(sql, features, source, 'event', k, 4, 1, hooks)) busy.push(answers)
    } finally {
      await snapshotReader`ROLLBACK`
      snapshotReader.release()
      await observer.end({ timeout: 1 })
    }
    t.equal(compressed, 'done (1 chunk)', `${label}: the new chunk was compressed during the read`)
    t.equal(seenBySnapshot, late.length, `${label}: an older snapshot sees the frozen rows of the first compression`)
    t.same(rowsOf(busy), expected, `${label}: the read answers as the calm read: the rows are after its cutoff`)
    const after: BlockAnswers[] = []
    for await (const { answers } of joinPointInTime(sql, features, source, 'event', await soundCutoff(sql), 4, 1, { boundedReads: bounded })) after.push(answers)
    t.notSame(rowsOf(after), expected, `${label}: a read after them answers with them`)
    // the next round writes into a new chunk again
    await sql`SELECT drop_chunks('feature_snapshots', newer_than => ${new Date(T0 + DAYS * DAY).toISOString()}::timestamptz)`
  }
})
