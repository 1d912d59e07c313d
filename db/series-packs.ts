import type { Sql, TxSql } from './connection.js'
import { iso } from './params.js'
import { PACKED_NULL_HI, PACKED_NULL_LO } from '../src/domain/training-output.js'

export { PACKED_NULL_HI, PACKED_NULL_LO }

/**
 * Series packs (migrations/110): a packed copy of each numeric feature's settled past, which
 * point-in-time reads (db/point-in-time.ts) send as stored instead of reading value by value.
 *
 * Invariant, per feature with a mark: its packs hold exactly its rows with
 * event_time < horizon and ingested_at <= built_through, each (feature, entity)'s packs in
 * (event_time, ingested_at) order over non-overlapping event_time ranges. buildFeaturePacks
 * keeps it: called with a sound knowledge cutoff (db/knowledge.ts soundCutoff, taken before the
 * call), every row stamped at or before it has committed, so the rows it packs are exactly the
 * rows any later reader sees with ingested_at <= built_through.
 */

/** Packed times are µs read as doubles, exact below 2^53 µs: horizons stay before this (ms). */
export const MAX_PACKED_MS = Math.floor(2 ** 53 / 1000)

/** Values per pack (the last pack of a range may hold fewer). */
export const PACK_VALUES = 512

/** The 8 bytes a stored NULL is packed as: a NaN no stored value has (stored NaNs are packed canonical). */
const PACKED_NULL = (() => { const b = Buffer.alloc(8); b.writeInt32BE(PACKED_NULL_HI, 0); b.writeInt32BE(PACKED_NULL_LO, 4); return b })()

/** Serialises the builders of one feature (one advisory lock key per feature, in this class). */
const PACK_LOCK_CLASS = 7_305_110

export interface PackBuild {
  /** What was done: nothing to do, packs appended for newly settled time, all rebuilt, or not built. */
  action: 'current' | 'appended' | 'rebuilt' | 'skipped'
  /** Why packs were not built (`skipped`). */
  reason?: 'untracked_writes' | 'newer_build'
  packs: number
  values: number
}

export interface PackTarget {
  featureId: number
  /** The sound knowledge cutoff the packs are built through, epoch ms. */
  cutoffMs: number
  /** Values with event_time before this are packed, epoch ms (never moves back). */
  horizonMs: number
  /** Values per pack (tests use small ones to put pack boundaries everywhere). */
  packValues?: number
}

/**
 * Brings one feature's packs up to (cutoffMs, horizonMs), in one transaction: appends packs for
 * the time between the old and the new horizon when nothing was written before the old horizon
 * since the last build, else rebuilds the feature's packs whole (a backfill or a correction of
 * the packed past; rare). Does nothing while an untracked write is recorded (the write log
 * cannot tell what it changed; POST /v1/drift/write-log/rebuild clears it and every pack).
 */
export async function buildFeaturePacks (sql: Sql, target: PackTarget): Promise<PackBuild> {
  const packValues = Math.max(1, Math.floor(target.packValues ?? PACK_VALUES))
  // reads take a packed time in µs as a double: exact below 2^53 µs (2255-06-05)
  if (!(target.horizonMs <= MAX_PACKED_MS)) throw new RangeError(`pack horizon ${target.horizonMs} is past ${new Date(MAX_PACKED_MS).toISOString()}`)
  return sql.begin(async (tx) => {
    // READ COMMITTED: every statement below reads only rows stamped at or before the cutoff,
    // all committed before this transaction began, so each sees the same ones
    await tx`SELECT pg_advisory_xact_lock(${PACK_LOCK_CLASS}, ${target.featureId})`
    // after a rebuild of the write log (EXCLUSIVE, which drops every pack), never beside one
    await tx`LOCK TABLE feature_write_log IN ROW EXCLUSIVE MODE`
    // a DELETE or TRUNCATE of values waits for this build, or this build for its commit
    // (migrations/110: its trigger updates this row, then drops every mark). The values' table
    // first: a TRUNCATE that took it between this build's row lock and its first read of the
    // values would wait for the row while the build waited for the table
    await tx`LOCK TABLE feature_snapshots IN ACCESS SHARE MODE`
    await tx`SELECT epoch FROM feature_pack_epoch FOR SHARE`
    const [{ untracked }] = await tx<Array<{ untracked: boolean }>>`SELECT EXISTS (SELECT 1 FROM feature_untracked_writes) AS untracked`
    if (untracked) return { action: 'skipped', reason: 'untracked_writes', packs: 0, values: 0 }
    const cutoff = iso(target.cutoffMs)
    const [mark] = await tx<Array<{ built_through: Date, horizon: Date }>>`
      SELECT built_through, horizon FROM feature_pack_marks WHERE feature_id = ${target.featureId}`
    if (mark !== undefined && mark.built_through.getTime() > target.cutoffMs) return { action: 'skipped', reason: 'newer_build', packs: 0, values: 0 }
    const horizonMs = Math.max(target.horizonMs, mark?.horizon.getTime() ?? -Infinity)
    const horizon = iso(horizonMs)
    let action: PackBuild['action'] = 'current'
    let built = { packs: 0, values: 0 }
    if (mark === undefined || await wroteBefore(tx, target.featureId, mark.built_through, cutoff, mark.horizon)) {
      await tx`DELETE FROM feature_series_packs WHERE feature_id = ${target.featureId}`
      built = await packRange(tx, target.featureId, '-infinity', horizon, cutoff, packValues)
      action = 'rebuilt'
    } else if (horizonMs > mark.horizon.getTime()) {
      built = await packRange(tx, target.featureId, mark.horizon.toISOString(), horizon, cutoff, packValues)
      action = 'appended'
    }
    await tx`
      INSERT INTO feature_pack_marks (feature_id, built_through, horizon)
      VALUES (${target.featureId}, ${cutoff}::text::timestamptz, ${horizon}::text::timestamptz)
      ON CONFLICT (feature_id) DO UPDATE SET built_through = excluded.built_through, horizon = excluded.horizon`
    return { action, ...built }
  })
}

/** Whether a logged write stamped in (after, through] wrote a value before `before`. */
async function wroteBefore (tx: TxSql, featureId: number, after: Date, through: string, before: Date): Promise<boolean> {
  const [{ wrote }] = await tx<Array<{ wrote: boolean }>>`
    SELECT EXISTS (
      SELECT 1 FROM feature_write_log
      WHERE feature_id = ${featureId} AND ingested_at > ${after} AND ingested_at <= ${through}::text::timestamptz
        AND first_event < ${before}) AS wrote`
  return wrote
}

/**
 * Packs the feature's rows with event_time in [from, to) and ingested_at <= cutoff: per
 * entity, runs of `packValues` values in (event_time, ingested_at) order. The first pack of an
 * entity starts at `from`, each later one at its first event_time, each ends where the next
 * starts (the last at `to`), so the ranges cover [from, to) without overlapping; `seq` (the
 * pack's number in the range) orders packs that start at the same time (more versions of one
 * event_time than a pack holds). Read in the primary key's order (no sort).
 */
async function packRange (tx: TxSql, featureId: number, from: string, to: string, cutoff: string, packValues: number): Promise<{ packs: number, values: number }> {
  const [r] = await tx<Array<{ packs: number, values: number }>>`
    WITH packed AS (
      INSERT INTO feature_series_packs (feature_id, entity_id, range_start, range_end, seq, n, event_us, ingested_us, value_num)
      SELECT ${featureId}::int4, p.entity_id, p.range_start,
             coalesce(lead(p.range_start) OVER (PARTITION BY p.entity_id ORDER BY p.pack), ${to}::text::timestamptz),
             p.pack::int4, p.n, p.event_us, p.ingested_us, p.value_num
      FROM (
        SELECT x.entity_id, x.pack,
               CASE WHEN x.pack = 0 THEN ${from}::text::timestamptz ELSE min(x.event_time) END AS range_start,
               count(*)::int4 AS n,
               string_agg(int8send((extract(epoch FROM x.event_time) * 1000000)::int8), ''::bytea ORDER BY x.event_time, x.ingested_at) AS event_us,
               string_agg(int8send((extract(epoch FROM x.ingested_at) * 1000000)::int8), ''::bytea ORDER BY x.event_time, x.ingested_at) AS ingested_us,
               string_agg(CASE WHEN x.value_num IS NULL THEN ${PACKED_NULL}::bytea
                               WHEN x.value_num = 'NaN'::float8 THEN float8send('NaN'::float8)
                               ELSE float8send(x.value_num) END, ''::bytea ORDER BY x.event_time, x.ingested_at) AS value_num
        FROM (
          SELECT s.entity_id, s.event_time, s.ingested_at, s.value_num,
                 (row_number() OVER (PARTITION BY s.entity_id ORDER BY s.event_time, s.ingested_at) - 1) / ${packValues}::int8 AS pack
          FROM feature_snapshots s
          WHERE s.feature_id = ${featureId} AND s.event_time >= ${from}::text::timestamptz AND s.event_time < ${to}::text::timestamptz
            AND s.ingested_at <= ${cutoff}::text::timestamptz
        ) x
        GROUP BY x.entity_id, x.pack
      ) p
      RETURNING n)
    SELECT count(*)::int4 AS packs, coalesce(sum(n), 0)::int8 AS values FROM packed`
  return { packs: r.packs, values: Number(r.values) }
}

/** The numeric features (packs hold float8 values; texts are read from the rows). */
export async function packableFeatures (sql: Sql): Promise<number[]> {
  const rows = await sql<Array<{ id: number }>>`SELECT id FROM feature_definitions WHERE dtype <> 'string' ORDER BY id`
  return rows.map((r) => r.id)
}

/** Drops every pack and mark (the write log was rebuilt: what it vouched for may have changed). */
export async function dropAllPacks (tx: TxSql): Promise<void> {
  await tx`DELETE FROM feature_pack_marks`
  await tx`DELETE FROM feature_series_packs`
}
