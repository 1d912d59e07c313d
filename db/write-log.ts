import type { Sql, TxSql } from './connection.js'
import { iso } from './params.js'
import { dropAllPacks } from './series-packs.js'

type Queryable = Sql | TxSql

/**
 * The write log (migrations/060): per ingest transaction and feature, the event_time range it
 * wrote and its entity when it wrote only one. It lets a drift check prove that a window holds
 * no corrections, and then read it without the point-in-time dedupe.
 */

/** What one ingest transaction wrote of one feature. */
export interface WrittenRange {
  featureId: number
  firstMs: number
  lastMs: number
  /** The one entity written, or null when several were. */
  entityId: string | null
}

/**
 * Tracks, while rows are staged, the event_time range and the entities written per feature.
 * A few comparisons per row.
 */
export class WrittenRanges {
  private readonly byFeature = new Map<number, WrittenRange>()
  private lastFeature = Number.NaN
  private last: WrittenRange | undefined

  add (featureId: number, entityId: string, eventTimeMs: number): void {
    let r = featureId === this.lastFeature ? this.last : this.byFeature.get(featureId)
    if (r === undefined) {
      r = { featureId, firstMs: eventTimeMs, lastMs: eventTimeMs, entityId }
      this.byFeature.set(featureId, r)
    } else {
      if (eventTimeMs < r.firstMs) r.firstMs = eventTimeMs
      else if (eventTimeMs > r.lastMs) r.lastMs = eventTimeMs
      if (r.entityId !== null && r.entityId !== entityId) r.entityId = null
    }
    this.lastFeature = featureId
    this.last = r
  }

  get ranges (): WrittenRange[] { return [...this.byFeature.values()] }
}

/**
 * Marks the caller's transaction as the ingest path's, so that the trigger on feature_snapshots
 * does not count its statements as untracked writes. Until `logWrites` ends it.
 */
export async function beginLoggedWrite (tx: TxSql): Promise<void> {
  await tx`SELECT set_config('feature_store.logged_write', 'on', true)`
}

/**
 * Records what the transaction wrote under `stamp` (one row per feature) and ends the mark of
 * beginLoggedWrite. In the same transaction as the values.
 */
export async function logWrites (tx: TxSql, stamp: string, ranges: WrittenRange[]): Promise<void> {
  await tx`
    WITH w AS (
      INSERT INTO feature_write_log (feature_id, ingested_at, first_event, last_event, entity_id)
      SELECT u.feature_id, ${stamp}::text::timestamptz, timestamptz 'epoch' + u.first_ms * interval '1 millisecond',
             timestamptz 'epoch' + u.last_ms * interval '1 millisecond', u.entity_id
      FROM unnest(${ranges.map((r) => r.featureId)}::int4[], ${ranges.map((r) => r.firstMs)}::int8[],
                  ${ranges.map((r) => r.lastMs)}::int8[], ${ranges.map((r) => r.entityId)}::text[]) AS u(feature_id, first_ms, last_ms, entity_id))
    SELECT set_config('feature_store.logged_write', '', true)`
}

/** A window of one feature (optionally one entity), [fromMs, toMs), read at cutoff cutoffMs. */
export interface LoggedWindow { featureId: number, entityId?: string, fromMs: number, toMs: number, cutoffMs: number }

/**
 * Past this many logged writes in a window the proof is not attempted (the window is read
 * point-in-time): a store written in many small transactions (a value a minute) would make the
 * proof cost as much as the read it saves.
 */
export const MAX_LOGGED_WRITES = 20_000

/**
 * True when the window provably holds no corrections at the cutoff: no untracked write was ever
 * made, and no two logged writes known at the cutoff, of one entity (or of several entities),
 * overlap in event_time inside the window. Then every (entity, event_time) of the window has at
 * most one row with ingested_at <= cutoff, and the rows of a plain range scan are exactly the
 * point-in-time values. Run it in the transaction (snapshot) that reads the window.
 *
 * At most MAX_LOGGED_WRITES records are looked at; more, and the answer is false.
 *
 * Records in event_time order (of their range clipped to the window): a record overlaps an
 * earlier one it can share rows with when the latest end among those is at or after its start:
 * among all earlier records for a record of several entities; among those of several entities
 * and those of its own entity for a record of one entity.
 */
export async function windowHasNoCorrections (sql: Queryable, w: LoggedWindow): Promise<boolean> {
  const entity = w.entityId === undefined ? sql`` : sql`AND (l.entity_id IS NULL OR l.entity_id = ${w.entityId})`
  const [row] = await sql<{ clean: boolean }[]>`
    SELECT NOT EXISTS (SELECT 1 FROM feature_untracked_writes)
       AND (SELECT count(*) FROM (
              SELECT 1 FROM feature_write_log l
              WHERE l.feature_id = ${w.featureId} AND l.last_event >= ${iso(w.fromMs)}::timestamptz
                AND l.first_event < ${iso(w.toMs)}::timestamptz AND l.ingested_at <= ${iso(w.cutoffMs)}::timestamptz ${entity}
              LIMIT ${MAX_LOGGED_WRITES + 1}) n) <= ${MAX_LOGGED_WRITES}
       AND NOT EXISTS (
         SELECT 1 FROM (
           SELECT c.first_event, c.entity_id,
                  max(c.last_event) OVER w AS any_end,
                  max(c.last_event) FILTER (WHERE c.entity_id IS NULL) OVER w AS several_end,
                  max(c.last_event) OVER (PARTITION BY c.entity_id ORDER BY c.first_event, c.ingested_at ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS own_end
           FROM (
             SELECT greatest(l.first_event, ${iso(w.fromMs)}::timestamptz) AS first_event,
                    least(l.last_event, ${iso(w.toMs)}::timestamptz) AS last_event, l.entity_id, l.ingested_at
             FROM feature_write_log l
             WHERE l.feature_id = ${w.featureId} AND l.last_event >= ${iso(w.fromMs)}::timestamptz
               AND l.first_event < ${iso(w.toMs)}::timestamptz AND l.ingested_at <= ${iso(w.cutoffMs)}::timestamptz ${entity}
             LIMIT ${MAX_LOGGED_WRITES + 1}
           ) c
           WINDOW w AS (ORDER BY c.first_event, c.ingested_at ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
         ) o
         WHERE CASE WHEN o.entity_id IS NULL THEN o.any_end >= o.first_event
                    ELSE o.several_end >= o.first_event OR o.own_end >= o.first_event END
       ) AS clean`
  return row.clean
}

/**
 * Drops the log rows that end before the oldest stored value (TimescaleDB's retention policy
 * dropped their values; or values were deleted by hand): they describe only values that are
 * gone, so no window can hold a correction they would reveal. Returns how many went.
 *
 * One statement, one snapshot: a write committed before it has its values counted in the
 * minimum, so its own log row (which ends at or after that minimum) stays; a write committing
 * during it is not seen by the DELETE at all. The minimum is cheap on a hypertable (an index scan
 * of the oldest chunk) and a full scan on a plain table, so the service runs this in
 * TimescaleDB mode only.
 */
export async function pruneWriteLog (sql: Sql): Promise<number> {
  const r = await sql`DELETE FROM feature_write_log WHERE last_event < (SELECT min(event_time) FROM feature_snapshots)`
  return r.count
}

/** The state of the write log: how many writes it records, and the untracked writes that turn the range read off. */
export interface WriteLogStatus {
  loggedWrites: number
  untrackedWrites: number
  firstUntrackedMs: number | null
  lastUntrackedMs: number | null
}

export async function writeLogStatus (sql: Sql): Promise<WriteLogStatus> {
  const [row] = await sql<Array<{ logged: string, untracked: string, first_ms: string | null, last_ms: string | null }>>`
    SELECT (SELECT count(*) FROM feature_write_log) AS logged,
           u.untracked, u.first_ms, u.last_ms
    FROM (SELECT count(*) AS untracked, (extract(epoch FROM min(at)) * 1000)::int8 AS first_ms,
                 (extract(epoch FROM max(at)) * 1000)::int8 AS last_ms
          FROM feature_untracked_writes) u`
  return {
    loggedWrites: Number(row.logged),
    untrackedWrites: Number(row.untracked),
    firstUntrackedMs: row.first_ms === null ? null : Number(row.first_ms),
    lastUntrackedMs: row.last_ms === null ? null : Number(row.last_ms),
  }
}

/** What a rebuild did. */
export interface WriteLogRebuild { loggedWrites: number, clearedUntrackedWrites: number }

/**
 * Rebuilds the write log from the stored values (one row per feature and stamp) and the earliest
 * event time per key (feature_first_events), and clears the untracked-write marker, while
 * writers wait (SHARE lock on feature_snapshots). A full scan: for operators after writing
 * values by direct SQL, and for tests.
 *
 * Locks: feature_snapshots first (as the ingest path, which writes the values and then the log),
 * so that the two cannot deadlock; then the log itself EXCLUSIVE, so that two rebuilds run one
 * after the other (two at once would both insert, and the duplicate rows would overlap and turn
 * the range read off for good).
 */
export async function rebuildWriteLog (sql: Sql): Promise<WriteLogRebuild> {
  return sql.begin(async (tx) => {
    await tx`LOCK TABLE feature_snapshots IN SHARE MODE`
    await tx`LOCK TABLE feature_write_log IN EXCLUSIVE MODE`
    await tx`DELETE FROM feature_write_log`
    const cleared = await tx`DELETE FROM feature_untracked_writes`
    const logged = await tx`
      INSERT INTO feature_write_log (feature_id, ingested_at, first_event, last_event, entity_id)
      SELECT feature_id, ingested_at, min(event_time), max(event_time), CASE WHEN min(entity_id) = max(entity_id) THEN min(entity_id) END
      FROM feature_snapshots
      GROUP BY feature_id, ingested_at`
    // the other record the marker vouches for (bounded point-in-time reads go by it)
    await tx`DELETE FROM feature_first_events`
    await tx`
      INSERT INTO feature_first_events (feature_id, entity_id, first_event)
      SELECT feature_id, entity_id, min(event_time) FROM feature_snapshots
      GROUP BY feature_id, entity_id`
    // and the series packs, which it vouches for too: rebuilt by their job from the values
    await dropAllPacks(tx)
    return { loggedWrites: logged.count, clearedUntrackedWrites: cleared.count }
  })
}
