import type postgres from 'postgres'
import type { Sql } from './connection.js'
import { PACKED_NULL_HI, PACKED_NULL_LO, type PointInTime } from '../src/domain/training-output.js'
import { iso } from './params.js'
import { COPY_SIGNATURE, throwIfCopyFailed } from './copy-out.js'

/**
 * The point-in-time read path. A join is answered block by block on one or more reserved
 * connections (sessions, openPointInTimeSessions), all inside REPEATABLE READ transactions on
 * one exported snapshot (one snapshot for the whole training set); per block, on one session:
 *
 * 1. the block's (entity, feature) pairs, each with the smallest and greatest T of the entity's
 *    rows in the block, go into a temporary table (one INSERT from arrays);
 * 2. one COPY ... TO STDOUT (FORMAT binary) streams, for every pair, in pair order: the best
 *    candidate visible at the smallest T (one backward probe of the primary key index), then
 *    arrays of every candidate that becomes visible up to the greatest T (one forward range
 *    scan), in the order they become visible: one tuple per pair. The merge
 *    (src/domain/training-output.ts) answers the rows.
 *
 * So the entity rows never travel to the database, and each stored value is read at most once
 * per block instead of once per row and feature. Binary COPY avoids text formatting of
 * timestamps and floats on both sides; arrays make one message per pair instead of one per
 * value. COPY takes no parameters, so every value of the statement comes from the temporary
 * table, filled through a parameterised INSERT.
 *
 * Series packs (PairsSpec.packs; postgres mode, "event" mode): a numeric pair whose packs the
 * write log proves current (migrations/110, db/series-packs.ts) gets its values before the pack
 * horizon as the packs' byte strings joined, sent as stored, and its rows only from the horizon
 * on; the merge takes the packed values as they are (PointInTimeMerge.pushPacked). Same
 * candidates, a fraction of the database's work (~0.3 µs a value from the index).
 *
 * Bounded reads (PairsSpec.bounded; TimescaleDB mode by default) give the COPY the block's
 * time bounds as plan-time constants (feature_store_pit_prepare, migrations/070), so a
 * hypertable plans only the chunks the block can touch instead of all of them: the direct
 * COPY's bounds are known only at run time, and its anchor probe has no lower bound at all.
 * Same tuples, same order, same decoder.
 */

export type ReservedSql = postgres.ReservedSql<Record<string, unknown>>

/**
 * Bounded reads: anchors are looked for first from `lookbackMs` before the block's smallest T,
 * then further back only for the pairs still without one whose first value is older.
 */
export interface BoundedReads { lookbackMs: number }

export interface PairsSpec {
  mode: PointInTime
  /** The knowledge cutoff K, epoch ms. */
  cutoffMs: number
  featureIds: number[]
  /** Per feature: true when its values are text (dtype string). */
  textFeatures: boolean[]
  /** Per feature: the entity id a market-wide feature's values are stored under, else null. */
  sharedEntityIds: Array<string | null>
  /** The block's distinct entities and, per entity, the smallest and greatest T (epoch ms). */
  entityIds: string[]
  minT: Float64Array
  maxT: Float64Array
  /** Read with plan-time bounds (feature_store_pit_prepare), else with one direct COPY. */
  bounded?: BoundedReads
  /**
   * Read numeric pairs' settled past from their series packs (migrations/110) where the write
   * log proves them current; "event" mode and direct reads only.
   */
  packs?: boolean
}

/**
 * A candidate: its pair, event_time (epoch ms), ingested_at (epoch µs; 0 in "event" mode,
 * where candidates come in (event_time, ingested_at) order and the later one wins a tie) and
 * stored value.
 */
export type CandidateSink = (pair: number, eventMs: number, ingestedUs: number, num: number | null, text: string | null) => void

/**
 * Takes a pair's packed values as they came (PointInTimeMerge.pushPacked): byte offsets into
 * `dv` of the event times, the ingested_at (-1: none sent) and the values, their count, and the
 * range and cutoff that decide which of them count. Without one, the decoder cuts them itself
 * and hands each to the CandidateSink.
 */
export type PackedSink = (pair: number, dv: DataView, ev: number, ing: number, val: number, n: number, minT: number, maxT: number, cutoffUs: number) => void

/**
 * Tells a long read when to let other work run (src/services/event-loop-slices.ts): `due()`
 * when the read has kept the event loop long enough, `taken()` once it had its turn.
 */
export interface TurnClock { due: () => boolean, taken: () => void }

/** A snapshot id as pg_export_snapshot() returns it (e.g. 00000003-0000001B-1). */
const SNAPSHOT_ID = /^[0-9A-F]+(-[0-9A-F]+)+$/i

/** Reserved connections held by open join sessions of this pool (the first of each join included). */
const reservedByJoins = new WeakMap<Sql, number>()

/**
 * Opens up to `count` read sessions of one join, all on ONE snapshot: the first reserved
 * connection opens a REPEATABLE READ transaction and exports its snapshot
 * (pg_export_snapshot()); every other one opens its own REPEATABLE READ transaction and
 * imports that snapshot (SET TRANSACTION SNAPSHOT) before any query, so every session sees
 * exactly the same rows. Every session holds ROW SHARE on feature_snapshots (and its chunks)
 * for its transaction, the first from before the snapshot (lockAgainstChunkRewrites: TimescaleDB
 * must not mark a chunk fully compressed under a snapshot that still needs its other rows); an
 * extra session that cannot have it within JOIN_LOCK_TIMEOUT_MS is left out. Each session has
 * its own temporary table of pairs (unless
 * `pairsTable: false`: drift checks make their own tables): made once per connection, before
 * the transaction, and kept for the connection's next sessions (its rows go with each
 * transaction). Creating it in every transaction cost ~3-4 ms of catalog writes per request
 * (a one-row training set took 11-17 ms instead of 8-11) and left dead catalog rows behind
 * at every request.
 *
 * The extra sessions are optional: they are opened only while the joins of this pool hold
 * fewer than its size minus two reserved connections, so that concurrent joins never wait
 * for one another's connections (each join needs one to progress) and ordinary queries keep
 * at least two. Fewer sessions than asked give the same answers, more slowly. With more than
 * one session, each waits at most JOIN_LOCK_TIMEOUT_MS for a lock (see there).
 */
export async function openPointInTimeSessions (sql: Sql, count: number, opts: { pairsTable?: boolean } = {}): Promise<ReservedSql[]> {
  const setUp = async (conn: ReservedSql): Promise<void> => { if (opts.pairsTable !== false) await createPairsTable(conn) }
  const sessions: ReservedSql[] = []
  const held = (): number => reservedByJoins.get(sql) ?? 0
  const track = (n: number): void => { reservedByJoins.set(sql, held() + n) }
  let extras: Array<Promise<ReservedSql>> = []
  const left = new Set<ReservedSql>()
  try {
    const first = await reserve(sql, track)
    sessions.push(first)
    await setUp(first)
    await first`BEGIN ISOLATION LEVEL REPEATABLE READ`
    // before the snapshot, which the transaction's first query takes (LOCK takes none)
    await lockAgainstChunkRewrites(first)
    const poolMax = (sql.options as { max?: number }).max ?? 10
    const extra = Math.min(count - 1, Math.max(0, poolMax - 2 - held()))
    if (extra > 0) {
      // claimed at once (reserve counts from the call), so that joins opening meanwhile see them
      extras = Array.from({ length: extra }, () => {
        const p = reserve(sql, track)
        p.catch(() => {}) // awaited below; this only keeps an early failure from being "unhandled"
        return p
      })
      const [{ id }] = await first<Array<{ id: string }>>`SELECT pg_export_snapshot() AS id`
      if (!SNAPSHOT_ID.test(id)) throw new Error(`unexpected snapshot id ${JSON.stringify(id)}`)
      for (const pending of extras) {
        const conn = await pending
        sessions.push(conn)
        await setUp(conn)
        await conn`BEGIN ISOLATION LEVEL REPEATABLE READ`
        // SET takes no parameters; the id comes from the server and was checked above
        await conn.unsafe(`SET TRANSACTION SNAPSHOT '${id}'`)
        await setJoinLockTimeout(conn)
        // the first session's guard covers the time up to here; from here on each session is
        // its own guard. A wait for it may close a cycle through the first session (a job's
        // exclusive request queued between them): that session is left out
        try {
          await lockAgainstChunkRewrites(conn)
        } catch (err) {
          if (!isLockTimeout(err) && !isDeadlock(err)) throw err
          sessions.splice(sessions.indexOf(conn), 1)
          left.add(conn)
          await closePointInTimeSession(conn)
        }
      }
    }
    // (a join left with its first session alone never had the timeout: it waits freely)
    if (sessions.length > 1) await setJoinLockTimeout(first)
  } catch (err) {
    // every connection reserved so far, including extras not yet set up, goes back
    for (const r of await Promise.allSettled(extras)) {
      if (r.status === 'fulfilled' && !sessions.includes(r.value) && !left.has(r.value)) sessions.push(r.value)
    }
    await Promise.all(sessions.map(async (s) => closePointInTimeSession(s)))
    throw err
  }
  return sessions
}

/**
 * ROW SHARE on feature_snapshots and, on a hypertable, on each of its chunks, held to the end of
 * the session's transaction. TimescaleDB decides at planning, from its catalog as it is now and
 * not as the session's snapshot saw it, whether a chunk still has rows outside its compressed
 * part; recompressing a chunk that took backfills moves those rows into new compressed batches
 * (invisible to an older snapshot) and then marks the chunk fully compressed, so a read planned
 * after that mark skips rows the snapshot should see (they vanished from training sets read
 * across the recompression). The mark and a first compression need an EXCLUSIVE lock on the
 * chunk, which ROW SHARE holds off: a recompression under a read is rolled back after
 * TimescaleDB's wait for the mark (5 s) and redone at the policy's next run; a first
 * compression waits for the transaction. Ingestion (ROW EXCLUSIVE) and reads are not blocked.
 * On a plain table (postgres mode) it is one lock that nothing of the service's conflicts with.
 * A lock timeout or a deadlock here is the 503 of any other lock wait (src/plugins/errors.ts).
 */
async function lockAgainstChunkRewrites (conn: ReservedSql): Promise<void> {
  await conn`LOCK TABLE feature_snapshots IN ROW SHARE MODE`
}

/** The join's lock timeout for the rest of the session's transaction (see JOIN_LOCK_TIMEOUT_MS). */
async function setJoinLockTimeout (conn: ReservedSql): Promise<void> {
  await conn`SELECT set_config('lock_timeout', ${`${JOIN_LOCK_TIMEOUT_MS}ms`}, true)`
}

/** Whether a statement was chosen as the victim of a deadlock (40P01). */
function isDeadlock (err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '40P01'
}

/**
 * How long a session of a join with several sessions waits for a lock before giving up (55P03).
 * The sessions share one transaction's work, so a lock wait can close a cycle PostgreSQL cannot
 * see: session A holds a chunk's read lock and waits for the service, which waits for session
 * B, whose read lock request queues behind a job's exclusive request (TimescaleDB compressing
 * that chunk), which waits for A. The callers then go on with fewer sessions (down to one,
 * which waits as long as it takes: alone, it closes no cycle).
 */
export const JOIN_LOCK_TIMEOUT_MS = 2000

/** Whether a query failed because a lock was not granted in time (lock_timeout, 55P03). */
export function isLockTimeout (err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '55P03'
}

/**
 * The session is now the join's only one: it waits for locks as any other query does (the
 * server's lock_timeout, if an operator set one, else as long as it takes), for the rest of its
 * transaction. Called at the transaction's top level (not inside a block's savepoint, whose
 * rollback would undo it).
 */
export async function waitForLocksFreely (conn: ReservedSql): Promise<void> {
  await conn`SET LOCAL lock_timeout TO DEFAULT`
}

/**
 * A block's read on a session of a join with several sessions is undone to here when its lock
 * wait runs out while the session has become the join's last (blockSavepoint, then one of
 * releaseBlockSavepoint or rollbackToBlockSavepoint).
 */
export async function blockSavepoint (conn: ReservedSql): Promise<void> {
  await conn`SAVEPOINT join_block`
}

export async function releaseBlockSavepoint (conn: ReservedSql): Promise<void> {
  await conn`RELEASE SAVEPOINT join_block`
}

export async function rollbackToBlockSavepoint (conn: ReservedSql): Promise<void> {
  await conn`ROLLBACK TO SAVEPOINT join_block`
}

/** Reserves a connection, counted from the call (before it is given) until it is released. */
async function reserve (sql: Sql, track: (n: number) => void): Promise<ReservedSql> {
  track(1)
  let conn: ReservedSql
  try {
    conn = await sql.reserve()
  } catch (err) {
    track(-1)
    throw err
  }
  const release = conn.release.bind(conn)
  let released = false
  conn.release = () => {
    if (!released) { released = true; track(-1) }
    release()
  }
  return conn
}

/**
 * The session's table of pairs, if the connection does not have it yet. Outside a transaction,
 * so that it outlives it; ON COMMIT DELETE ROWS (and the rollback that ends every session)
 * leaves it empty for the next session on the connection.
 */
async function createPairsTable (conn: ReservedSql): Promise<void> {
  await conn`CREATE TEMP TABLE IF NOT EXISTS pit_pairs (
    pair int4 NOT NULL, feature_id int4 NOT NULL, entity_id text NOT NULL, is_text bool NOT NULL,
    min_t timestamptz NOT NULL, max_t timestamptz NOT NULL,
    k_min timestamptz NOT NULL, k_max timestamptz NOT NULL,
    packed bool NOT NULL, row_from timestamptz NOT NULL, pack_w timestamptz
  ) ON COMMIT DELETE ROWS`
  // the anchors of a bounded read (feature_store_pit_prepare)
  await conn`CREATE TEMP TABLE IF NOT EXISTS pit_anchor (
    pair int4 PRIMARY KEY, event_time timestamptz NOT NULL, ingested_at timestamptz NOT NULL,
    value_num float8, value_text text
  ) ON COMMIT DELETE ROWS`
}

/** Ends the transaction (the pairs table keeps none of its rows) and gives the connection back. */
export async function closePointInTimeSession (conn: ReservedSql): Promise<void> {
  try {
    await conn`ROLLBACK`
  } catch { /* a broken connection is discarded by the pool */ }
  conn.release()
}

/** Streams the candidates of one block into `sink`, in pair order. */
export async function readBlockCandidates (conn: ReservedSql, spec: PairsSpec, sink: CandidateSink, clock?: TurnClock, packedSink?: PackedSink): Promise<void> {
  await conn`TRUNCATE pit_pairs`
  const packs = spec.packs === true && spec.mode === 'event' && spec.bounded === undefined
  // pair = entity index * features + feature index; k_min / k_max: the cutoff at min_t / max_t.
  // packed: the pair's values before its feature's pack horizon come from the packs, which
  // hold every value stamped up to built_through (migrations/110); so they may be used when no
  // write stamped after that (and at or before K) can have touched the pair's range before the
  // horizon, and no untracked write is recorded. Its rows are then read from the horizon on
  // (row_from). pack_w: built_through (ingested_at goes out with the packs when it passes K).
  // (without packs the statement does none of that: no marks, no write log, packed false)
  const packedColumns = packs
    ? conn`
             m.horizon, m.built_through,
             (m.feature_id IS NOT NULL AND NOT f.is_text AND u.none AND NOT EXISTS (
                SELECT 1 FROM feature_write_log l
                WHERE l.feature_id = f.id AND l.ingested_at > m.built_through AND l.ingested_at <= k.k
                  AND l.first_event < m.horizon AND l.first_event <= e.max_t AND l.last_event > e.min_t
                  AND (l.entity_id IS NULL OR l.entity_id = coalesce(f.shared_id, e.id)))) AS packed`
    : conn`NULL::timestamptz AS horizon, NULL::timestamptz AS built_through, false AS packed`
  const packedJoins = packs
    ? conn`
      CROSS JOIN (SELECT NOT EXISTS (SELECT 1 FROM feature_untracked_writes) AS none) u
      LEFT JOIN feature_pack_marks m ON m.feature_id = f.id`
    : conn``
  await conn`
    INSERT INTO pit_pairs (pair, feature_id, entity_id, is_text, min_t, max_t, k_min, k_max, packed, row_from, pack_w)
    SELECT q.pair, q.feature_id, q.entity_id, q.is_text, q.min_t, q.max_t, q.k_min, q.k_max, q.packed,
           CASE WHEN q.packed THEN q.horizon ELSE '-infinity'::timestamptz END, q.built_through
    FROM (
      SELECT (e.i - 1) * ${spec.featureIds.length}::int4 + (f.i - 1) AS pair, f.id AS feature_id, coalesce(f.shared_id, e.id) AS entity_id,
             f.is_text, e.min_t, e.max_t,
             CASE WHEN ${spec.mode} = 'known' THEN least(e.min_t, k.k) ELSE k.k END AS k_min,
             CASE WHEN ${spec.mode} = 'known' THEN least(e.max_t, k.k) ELSE k.k END AS k_max,
             ${packedColumns}
      FROM unnest(${spec.entityIds}::text[], ${Array.from(spec.minT, iso)}::text[]::timestamptz[], ${Array.from(spec.maxT, iso)}::text[]::timestamptz[]) WITH ORDINALITY AS e(id, min_t, max_t, i)
      CROSS JOIN unnest(${spec.featureIds}::int4[], ${spec.textFeatures.map(String)}::text[]::bool[], ${spec.sharedEntityIds}::text[]) WITH ORDINALITY AS f(id, is_text, shared_id, i)
      CROSS JOIN (SELECT ${iso(spec.cutoffMs)}::text::timestamptz AS k) k
      ${packedJoins}
    ) q
    ORDER BY 1`
  // One tuple per pair with candidates: the anchor (the best candidate visible at min_t), then
  // arrays of the candidates that become visible up to max_t, in that order: the arrays are
  // aggregated from a subquery sorted once (PostgreSQL keeps a sorted subquery's order into a
  // plain aggregate; in "event" mode it reads the rows presorted from the primary key index).
  // An ORDER BY inside each array_agg made PostgreSQL 15 sort every array separately, which
  // cost about as much as reading the rows (0.63 vs 0.33 s for 1.2M candidates in 420 pairs).
  // The temporary table is scanned in the order it was filled (pair order); the merge checks
  // the order of pairs and of candidates, and fails loudly otherwise.
  // Bounded reads: the anchors are found beforehand (into pit_anchor) and the later candidates
  // come from the view pit_block_values (feature_snapshots within the block's time range), both
  // made by feature_store_pit_prepare (migrations/070) with the block's bounds as constants.
  if (spec.bounded) await conn`SELECT feature_store_pit_prepare(${spec.mode === 'known'}, ${spec.bounded.lookbackMs}::float8 * interval '1 millisecond')`
  const anchor = spec.bounded
    ? conn`SELECT x.event_time, x.ingested_at, x.value_num, x.value_text FROM pit_anchor x WHERE x.pair = p.pair LIMIT 1`
    : conn`
          SELECT s.event_time, s.ingested_at, s.value_num, s.value_text
          FROM feature_snapshots s
          WHERE s.feature_id = p.feature_id AND s.entity_id = p.entity_id
            AND s.event_time <= p.min_t AND s.ingested_at <= p.k_min
          ORDER BY s.event_time DESC, s.ingested_at DESC
          LIMIT 1`
  const values = spec.bounded ? conn`pit_block_values` : conn`feature_snapshots`
  // The candidates of numeric and of text features come from two subqueries, one of which a
  // pair's is_text leaves out before it runs: the numeric one reads no column outside the
  // primary key index (it INCLUDEs value_num, migrations/100), so PostgreSQL reads it alone
  // (an index-only scan) where the table's pages are marked all-visible, instead of fetching
  // every candidate's table row: 0.31 instead of 0.51 s for 1.26M candidates on 18.4.
  const known = spec.mode === 'known'
  const later = known
    ? conn`s.event_time <= p.max_t AND s.ingested_at <= p.k_max AND (s.event_time > p.min_t OR s.ingested_at > p.k_min)`
    : packs
      ? conn`s.event_time > p.min_t AND s.event_time <= p.max_t AND s.event_time >= p.row_from AND s.ingested_at <= p.k_max`
      : conn`s.event_time > p.min_t AND s.event_time <= p.max_t AND s.ingested_at <= p.k_max`
  const order = known
    ? conn`greatest(s.event_time, s.ingested_at), s.event_time, s.ingested_at`
    : conn`s.event_time, s.ingested_at`
  // ingested_at goes out only in "known" mode (the decoder takes a NULL array for "none")
  const ingested = known ? conn`array_agg(s.ingested_at)` : conn`NULL::timestamptz[]`
  // a pair's later candidates, read only when the pair's is_text is `text`
  const candidates = (text: boolean): postgres.PendingQuery<postgres.Row[]> => conn`
          SELECT array_agg(s.event_time) AS ev, ${ingested} AS ing, array_agg(s.value_num) AS num
                 ${text ? conn`, array_agg(s.value_text) AS txt` : conn``}
          FROM (
            SELECT s.event_time, s.ingested_at, s.value_num ${text ? conn`, s.value_text` : conn``}
            FROM ${values} s
            WHERE ${text ? conn`p.is_text` : conn`NOT p.is_text`} AND p.max_t > p.min_t
              AND s.feature_id = p.feature_id AND s.entity_id = p.entity_id AND ${later}
            ORDER BY ${order}
          ) s`
  // a packed pair's packs that reach into (min_t, max_t], their byte strings joined in order
  // (the decoder drops the values outside the range, and those stamped after K); ingested_at
  // only when some may have been stamped after K (FILTER: otherwise not even read)
  const packed = packs
    ? conn`
        LEFT JOIN LATERAL (
          SELECT string_agg(k.event_us, ''::bytea ORDER BY k.range_start, k.seq) AS ev,
                 string_agg(k.ingested_us, ''::bytea ORDER BY k.range_start, k.seq) FILTER (WHERE p.pack_w > p.k_max) AS ing,
                 string_agg(k.value_num, ''::bytea ORDER BY k.range_start, k.seq) AS num
          FROM feature_series_packs k
          WHERE p.packed AND p.max_t > p.min_t AND k.feature_id = p.feature_id AND k.entity_id = p.entity_id
            AND k.range_start <= p.max_t AND k.range_end > p.min_t
            -- from the pack holding min_t on (one probe back), not from the series' first pack
            AND k.range_start >= coalesce((
              SELECT h.range_start FROM feature_series_packs h
              WHERE h.feature_id = p.feature_id AND h.entity_id = p.entity_id AND h.range_start <= p.min_t
              ORDER BY h.range_start DESC LIMIT 1), '-infinity'::timestamptz)
        ) k ON true`
    : conn`CROSS JOIN (SELECT NULL::bytea AS ev, NULL::bytea AS ing, NULL::bytea AS num) k`
  const copy = conn`
      COPY (
        SELECT p.pair, a.event_time, ${known ? conn`a.ingested_at` : conn`NULL::timestamptz`}, a.value_num, a.value_text,
               coalesce(n.ev, t.ev), coalesce(n.ing, t.ing), coalesce(n.num, t.num), t.txt, k.ev, k.ing, k.num
        FROM pit_pairs p
        LEFT JOIN LATERAL (${anchor}) a ON true
        ${packed}
        LEFT JOIN LATERAL (${candidates(false)}) n ON true
        LEFT JOIN LATERAL (${candidates(true)}) t ON true
        WHERE a.event_time IS NOT NULL OR n.ev IS NOT NULL OR t.ev IS NOT NULL OR k.ev IS NOT NULL
      ) TO STDOUT (FORMAT binary)`
  const stream = await copy.readable()
  throwIfCopyFailed(stream)
  const decoder = new CandidateDecoder(sink, { features: spec.featureIds.length, minT: spec.minT, maxT: spec.maxT, cutoffUs: spec.cutoffMs * 1000 }, packedSink)
  // Decoding synchronously in flowing mode keeps the stream's buffer empty. When `clock` says
  // so, the stream is paused for a turn of the event loop: the socket reads many chunks in one
  // go when the answer comes fast, and decoding them all would hold up every other request; the
  // driver buffers meanwhile (and pauses the socket), resume() drains it.
  await new Promise<void>((resolve, reject) => {
    // after a decoding failure the rest is read and dropped: destroying the stream would
    // leave the socket paused as well
    let failure: unknown
    stream.on('data', (chunk: Buffer) => {
      if (failure !== undefined) return
      try {
        decoder.write(chunk)
      } catch (err) {
        failure = err
      }
      if (clock?.due() === true && !stream.isPaused()) {
        stream.pause()
        setImmediate(() => { clock.taken(); stream.resume() })
      }
    })
    stream.once('end', () => { if (failure === undefined) resolve(); else reject(failure) })
    stream.once('error', reject)
  })
  decoder.end()
}

/** Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch. */
const PG_EPOCH_US = 946_684_800_000_000
const PG_EPOCH_MS = 946_684_800_000
/** Binary array header of a one-dimensional array: ndim, flags, element type, length, lower bound. */
const ARRAY_HEADER = 20

const FIELDS = 12

/**
 * Pairs answered so far in this process, by where their values came from (a pair with both
 * counts in each): `packs` the series packs, `rows` the stored rows (/metrics).
 */
export const pitPairsRead = { packs: 0, rows: 0 }

/** What the decoder needs to cut a pair's packs to its range: the block's entities' ranges and K. */
export interface PackRanges {
  /** Features per entity (pair = entity index * features + feature index). */
  features: number
  /** Per entity: the smallest and greatest T of its rows in the block, epoch ms. */
  minT: Float64Array
  maxT: Float64Array
  /** The knowledge cutoff K, epoch µs. */
  cutoffUs: number
}

/**
 * Decodes the binary COPY stream of (pair int4; the anchor: event_time, ingested_at
 * timestamptz, value_num float8, value_text text, each NULL when there is none; the later
 * candidates: event_time[], ingested_at[], value_num[], value_text[], each NULL when there are
 * none; ingested_at is NULL throughout in "event" mode and value_text for non-text features;
 * the pair's packs: event_us, ingested_us (NULL unless some were stamped after K), value_num
 * byte strings, each NULL for a pair not read from packs). A pair's candidates go to the sink
 * in order: the anchor, the packs' values in (min_t, max_t] stamped at or before K (all before
 * the horizon), then the rows' (from the horizon on).
 * A tuple may span many chunks: chunks are kept until the tuple's known length has arrived,
 * then joined once, into one buffer the decoder reuses: a new Buffer per joined tuple (most
 * tuples span chunks) counted ~240 MB of external memory per 1M-row training set, and V8 answers
 * external memory with full garbage collections.
 */
export class CandidateDecoder {
  private chunks: Buffer[] = []
  private buffered = 0
  private joined = Buffer.allocUnsafe(0)
  /** Bytes needed before the next decoding attempt is worth it. */
  private need = 19
  private headerDone = false
  private ended = false
  private readonly at = new Int32Array(FIELDS)
  private readonly len = new Int32Array(FIELDS)

  constructor (private readonly sink: CandidateSink, private readonly ranges?: PackRanges, private readonly packedSink?: PackedSink) {}

  write (chunk: Buffer): void {
    if (this.ended) return
    this.chunks.push(chunk)
    this.buffered += chunk.length
    if (this.buffered < this.need) return
    const buf = this.chunks.length === 1 ? this.chunks[0] : this.join()
    let at = 0
    if (!this.headerDone) {
      if (!buf.subarray(0, 11).equals(COPY_SIGNATURE)) throw new Error('binary COPY: bad signature')
      const extension = buf.readInt32BE(15)
      if (buf.length < 19 + extension) return this.keep(buf, 0, 19 + extension)
      at = 19 + extension
      this.headerDone = true
    }
    for (;;) {
      const length = this.tupleLength(buf, at)
      if (length < 0) return this.keep(buf, at, -length)
      if (length === 0) { this.ended = true; return this.keep(buf, buf.length, 0) }
      this.decodeTuple(buf)
      at += length
    }
  }

  end (): void {
    if (!this.ended) throw new Error('binary COPY: stream ended before its trailer')
  }

  /**
   * The kept chunks as one buffer: the reused one (the first chunk may be the rest of its last
   * contents, which Buffer.copy moves safely), or a larger one when the tuple needs it.
   */
  private join (): Buffer {
    let target = this.joined
    if (target.length < this.buffered) target = Buffer.allocUnsafe(Math.max(this.buffered, target.length * 2))
    let at = 0
    for (const c of this.chunks) at += c.copy(target, at)
    this.joined = target
    return target.subarray(0, at)
  }

  /** Keeps buf[from..] for later; `need`: the bytes (from `from`) needed to go on. */
  private keep (buf: Buffer, from: number, need: number): void {
    const rest = buf.subarray(from)
    this.chunks = rest.length > 0 ? [rest] : []
    this.buffered = rest.length
    this.need = Math.max(need, 1)
  }

  /**
   * The byte length of the tuple at `at` (noting where its fields are): 0 for the trailer,
   * or minus the bytes known to be needed when the tuple has not fully arrived.
   */
  private tupleLength (buf: Buffer, at: number): number {
    const n = buf.length - at
    if (n < 2) return -2
    const fields = buf.readInt16BE(at)
    if (fields === -1) return 0
    if (fields !== FIELDS) throw new Error(`binary COPY: expected ${FIELDS} fields, got ${fields}`)
    let p = 2
    for (let f = 0; f < FIELDS; f++) {
      if (n < p + 4) return -(p + 4)
      const len = buf.readInt32BE(at + p)
      this.at[f] = at + p + 4
      this.len[f] = len
      p += 4 + (len < 0 ? 0 : len)
    }
    return n < p ? -p : p
  }

  /**
   * The pair's packed values in (min_t, max_t] of its entity and, when ingested_at came along,
   * stamped at or before K. In (event_time, ingested_at) order, so the scan stops past max_t.
   */
  private decodePacks (dv: DataView, pair: number): void {
    const { at, len, ranges } = this
    if (ranges === undefined) throw new Error('binary COPY: packed values without the block\'s ranges')
    const entity = Math.floor(pair / ranges.features)
    const minT = ranges.minT[entity]
    const maxT = ranges.maxT[entity]
    const n = len[9] >>> 3
    if (len[11] !== len[9] || (len[10] >= 0 && len[10] !== len[9]) || (len[9] & 7) !== 0) throw new Error('binary COPY: packs of unequal lengths')
    const e0 = at[9]
    const i0 = len[10] >= 0 ? at[10] : -1
    const v0 = at[11]
    if (this.packedSink !== undefined) return this.packedSink(pair, dv, e0, i0, v0, n, minT, maxT, ranges.cutoffUs)
    for (let k = 0; k < n; k++) {
      const eventMs = Math.floor(int64(dv, e0 + 8 * k) / 1000)
      if (eventMs <= minT) continue
      if (eventMs > maxT) break
      if (i0 >= 0 && int64(dv, i0 + 8 * k) > ranges.cutoffUs) continue
      const v = v0 + 8 * k
      const value = dv.getInt32(v) === PACKED_NULL_HI && dv.getInt32(v + 4) === PACKED_NULL_LO ? null : dv.getFloat64(v)
      this.sink(pair, eventMs, 0, value, null)
    }
  }

  private decodeTuple (buf: Buffer): void {
    const { at, len } = this
    // DataView reads: about twice as fast as Buffer's read methods in this loop
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length)
    const pair = dv.getInt32(at[0])
    if (len[1] >= 0) {
      this.sink(pair, eventMillis(dv, at[1]), len[2] < 0 ? 0 : epochMicros(dv, at[2]),
        len[3] < 0 ? null : dv.getFloat64(at[3]), len[4] < 0 ? null : buf.toString('utf8', at[4], at[4] + len[4]))
    }
    if (len[9] >= 0) { pitPairsRead.packs++; this.decodePacks(dv, pair) }
    if (len[5] < 0) return
    pitPairsRead.rows++
    // arrays: a 20-byte header (one dimension), then per element int32 length (-1: NULL) and bytes
    const count = dv.getInt32(at[5] + 12)
    let e = at[5] + ARRAY_HEADER
    let i = len[6] < 0 ? -1 : at[6] + ARRAY_HEADER
    let v = at[7] + ARRAY_HEADER
    let s = len[8] < 0 ? -1 : at[8] + ARRAY_HEADER
    for (let k = 0; k < count; k++) {
      const eventMs = eventMillis(dv, e + 4)
      e += 12
      let ingestedUs = 0
      if (i >= 0) { ingestedUs = epochMicros(dv, i + 4); i += 12 }
      let value: number | null = null
      if (dv.getInt32(v) < 0) v += 4
      else { value = dv.getFloat64(v + 4); v += 12 }
      let text: string | null = null
      if (s >= 0) {
        const l = dv.getInt32(s)
        if (l >= 0) { text = buf.toString('utf8', s + 4, s + 4 + l); s += 4 + l } else s += 4
      }
      this.sink(pair, eventMs, ingestedUs, value, text)
    }
  }
}

/** A big-endian int8 as a number (exact below 2^53: µs since 1970 before 2255, where packs end: MAX_PACKED_MS). */
function int64 (dv: DataView, at: number): number {
  return dv.getInt32(at) * 4294967296 + dv.getUint32(at + 4)
}

/** A timestamptz (µs since 2000) as epoch ms. Event times are whole milliseconds. */
function eventMillis (dv: DataView, at: number): number {
  const hi = dv.getInt32(at)
  if (hi > -0x100000 && hi < 0x100000) {
    const us = hi * 4294967296 + dv.getUint32(at + 4)
    return Math.floor(us / 1000) + PG_EPOCH_MS
  }
  return Number(dv.getBigInt64(at) / 1000n) + PG_EPOCH_MS
}

/** A timestamptz (µs since 2000) as epoch µs; exact for any time the store stamps. */
function epochMicros (dv: DataView, at: number): number {
  const hi = dv.getInt32(at)
  if (hi > -0x100000 && hi < 0x100000) return hi * 4294967296 + dv.getUint32(at + 4) + PG_EPOCH_US
  return Number(dv.getBigInt64(at)) + PG_EPOCH_US
}
