import t from 'tap'
import { compressedHourlyDays, DAY, DAYS, H, T0 } from '../lib/compressed-days.js'
import { appendValues, type RawValue } from '../lib/fixtures.js'
import { connect } from '../../db/connection.js'
import { soundCutoff } from '../../db/knowledge.js'
import type { BlockAnswers } from '../../src/domain/training-output.js'
import { joinPointInTime } from '../../src/services/training-sets.js'
import { onlyIn } from '../lib/test-server-mode.js'

/**
 * A point-in-time read spans several statements on one snapshot. TimescaleDB plans each
 * statement from its catalog as it is at planning: when a chunk that took backfills after its
 * compression is recompressed meanwhile, the backfilled rows move into new compressed batches
 * (invisible to the older snapshot) and the chunk is marked fully compressed, so a statement
 * planned after the mark no longer reads the rows the snapshot still sees there. Without the
 * join's guard (db/point-in-time.ts lockAgainstChunkRewrites) the backfills vanish from the
 * blocks read after the recompression; with it, the mark waits and the answers are those of a
 * calm read.
 */
t.test('a training set read across a recompression of backfilled chunks keeps every value its snapshot sees', await onlyIn('timescaledb'), async (t) => {
  const { sql, url, f, features } = await compressedHourlyDays(t)
  // four rows per day, at hh:45: each answered by that hour's latest backfill; one block per day
  const source = { count: DAYS * 4, entityAt: () => 'BTC', timeAt: (i: number) => T0 + Math.floor(i / 4) * DAY + (i % 4) * 5 * H + 45 * 60_000, extraAt: () => ({}) }
  const rowsOf = (blocks: BlockAnswers[]): unknown[] => blocks.flatMap((a) => Array.from({ length: a.block.size }, (_, r) => [a.value(r, 0), a.answerTime(r, 0)]))
  const partlyCompressed = async (): Promise<number> => {
    const [{ n }] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM _timescaledb_catalog.chunk c
      JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id
      WHERE h.table_name = 'feature_snapshots' AND c.status & 8 = 8`
    return n
  }

  const other = connect(url, { max: 1 })
  t.teardown(async () => { await other.end({ timeout: 1 }) })
  for (const [round, bounded] of [undefined, { lookbackMs: 7 * DAY }].entries()) {
    const label = bounded ? 'bounded reads' : 'direct reads'
    // backfills at hh:30 (hh:40 the second round) into the compressed chunks: each chunk is now
    // partly uncompressed
    const minute = 30 + 10 * round
    const backfills: RawValue[] = []
    for (let h = 0; h < DAYS * 24; h++) backfills.push({ featureId: f, entityId: 'BTC', eventTimeMs: T0 + h * H + minute * 60_000, num: -h - 1000 * round })
    await appendValues(sql, backfills)
    t.ok(await partlyCompressed() >= DAYS, `${label}: the backfilled chunks are partly uncompressed`)
    const k = await soundCutoff(sql)
    const expected = Array.from({ length: source.count }, (_, i) => {
      const h = Math.floor((source.timeAt(i) - T0) / H)
      return [-h - 1000 * round, T0 + h * H + minute * 60_000]
    })
    const calm: BlockAnswers[] = []
    for await (const { answers } of joinPointInTime(sql, features, source, 'event', k, 4, 1, { boundedReads: bounded })) calm.push(answers)
    t.same(rowsOf(calm), expected, `${label}: the backfills answer the rows`)

    // after block 0 was read (the snapshot is taken), the chunk block 1 reads is recompressed.
    // Held off by the guard, TimescaleDB gives up marking it (the primary key makes it wait up
    // to 5 s for the lock, then roll the recompression back: its policy retries at its next run)
    const busy: BlockAnswers[] = []
    let recompression = 'not tried'
    const hooks = {
      boundedReads: bounded,
      beforeRead: async (b: number) => {
        if (b !== 1) return
        recompression = await other`
          SELECT compress_chunk(c) FROM show_chunks('feature_snapshots', newer_than => ${new Date(T0 + DAY).toISOString()}::timestamptz, older_than => ${new Date(T0 + 2 * DAY).toISOString()}::timestamptz) c`
          .then((rows) => `done (${rows.length} chunk)`, (err: Error & { code?: string }) => `refused (${err.code ?? ''} ${err.message})`)
      },
    }
    for await (const { answers } of joinPointInTime(sql, features, source, 'event', k, 4, 1, hooks)) busy.push(answers)
    t.comment(`${label}: recompression during the read: ${recompression}`)
    t.not(recompression, 'not tried')
    t.same(rowsOf(busy), expected, `${label}: the same answers as the calm read`)

    // the guard only delayed the mark: a recompression after the read marks the chunks compressed
    await other`SELECT compress_chunk(c) FROM show_chunks('feature_snapshots') c`
    t.equal(await partlyCompressed(), 0, `${label}: no chunk is left partly uncompressed once no read holds it`)
  }
})
