import { Type } from 'typebox'
import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import {
  DriftCheckBody, DriftCheckResult, DriftDailyList, DriftDailyQuery, DriftLogList, DriftLogQuery,
  MonitorBody, MonitorId, MonitorList, MonitorPatch, MonitorQuery, MonitorView, WriteLogRebuilt, WriteLogStatus,
} from './schemas/drift.js'

/** Drift checks, their log, the daily summary, and scheduled monitors. */
export default async function driftRoutes (app: App): Promise<void> {
  app.post('/v1/drift/checks', {
    config: { scope: 'read' },
    schema: {
      tags: ['monitoring'],
      summary: 'Run a drift check of one feature: reference vs current window',
      description: 'Compares the values of a numeric feature (optionally one entity) in a reference (a time window of event_time, or a pipeline run\'s training dataset) with a current window. '
        + 'A window reads the point-in-time view: for each (entity, event_time) the latest correction known at the knowledge cutoff; nulls, NaN and infinities are left out. '
        + 'Methods: psi (10 reference-quantile bins, epsilon 1e-4 smoothing, drift at >= 0.2), ks (drift at p < 0.05), js (Jensen-Shannon distance over the same bins, base 2, drift at >= 0.1), '
        + 'wasserstein (Wasserstein-1 distance divided by the reference sample stddev, drift at >= 0.1). Computed in the database. '
        + 'With fewer than DRIFT_MIN_SAMPLES (default 30) values on either side the result is `insufficient_data`, with no statistic. Every check is written to the drift log (one row per method).',
      body: DriftCheckBody,
      response: { 201: DriftCheckResult, ...problems(400, 401, 403, 422, 429, 503) },
    },
  }, async (request, reply) => {
    const result = await app.services.drift.checkRequest(request.body)
    request.auditDetail = { check_id: result.check_id }
    return reply.code(201).send(result)
  })

  app.get('/v1/drift/logs', {
    schema: {
      tags: ['monitoring'],
      summary: 'Query the drift log',
      description: 'One entry per method of every check (by request or by a monitor), newest first. Filters combine with AND: feature (name: every version; name@version: that one), entity_id, method, drifted, status, checked_at range (from inclusive, to exclusive), check_id, monitor_id. Cursor pagination.',
      querystring: DriftLogQuery,
      response: { 200: DriftLogList, ...problems(400, 401, 403, 429, 503) },
    },
  }, async (request) => app.services.drift.logs(request.query))

  app.get('/v1/drift/daily', {
    schema: {
      tags: ['monitoring'],
      summary: 'Drift per day, feature and method',
      description: 'From the daily drift aggregate over the log (a continuous aggregate in TimescaleDB mode, a materialized view plus the log since its last refresh in postgres mode): checks, how many flagged drift, how many lacked data, and the mean, min and max statistic. Default range: the last 30 days.',
      querystring: DriftDailyQuery,
      response: { 200: DriftDailyList, ...problems(400, 401, 403, 429, 503) },
    },
  }, async (request) => app.services.drift.daily(request.query))

  app.get('/v1/drift/write-log', {
    schema: {
      tags: ['monitoring'],
      summary: 'State of the write log that speeds up drift checks',
      description: 'The ingest path records, with every write, the event_time range it wrote per feature. A check reads a window that this log proves free of corrections with a plain range scan, and any other window point-in-time (same answers either way). '
        + 'Values written by SQL outside the ingest path cannot be described, so they turn the range read off (`range_read: off_until_rebuilt`) until POST /v1/drift/write-log/rebuild.',
      response: { 200: WriteLogStatus, ...problems(401, 403, 429, 503) },
    },
  }, async () => app.services.drift.writeLog())

  app.post('/v1/drift/write-log/rebuild', {
    config: { scope: 'admin' },
    schema: {
      tags: ['monitoring'],
      summary: 'Rebuild the write log from the stored values (admin)',
      description: 'For after values were written by SQL outside the ingest path: rebuilds the log from feature_snapshots (one row per feature and ingested_at) and the earliest event time per feature and entity, and turns the range read of drift checks and the lower bounds of bounded point-in-time reads (PIT_READS) back on. '
        + 'A full scan of the stored values, during which writes of values wait (checks and reads do not). Rebuilds run one at a time. Answered after commit.',
      response: { 200: WriteLogRebuilt, ...problems(401, 403, 429, 503) },
    },
  }, async (request) => {
    const rebuilt = await app.services.drift.rebuildWriteLog()
    request.auditDetail = { logged_writes: rebuilt.logged_writes, cleared_untracked_writes: rebuilt.cleared_untracked_writes }
    return rebuilt
  })

  app.post('/v1/drift/monitors', {
    schema: {
      tags: ['monitoring'],
      summary: 'Create a drift monitor',
      description: 'A drift check that runs on a schedule over windows relative to the moment it runs: reference [now - offset - length, now - offset), likewise current. The first tick is due at once; then every `schedule.every` (at least 1s). With several service instances each tick runs exactly once; ticks missed while no instance ran are run once, not once each. Results go to the drift log with the monitor id.',
      body: MonitorBody,
      response: { 201: MonitorView, ...problems(400, 401, 403, 409, 422, 429, 503) },
    },
  }, async (request, reply) => {
    const monitor = await app.services.monitors.create(request.body)
    request.auditDetail = { monitor_id: monitor.id }
    return reply.code(201).header('location', `/v1/drift/monitors/${monitor.id}`).send(monitor)
  })

  app.get('/v1/drift/monitors', {
    schema: {
      tags: ['monitoring'],
      summary: 'List drift monitors',
      description: 'Filter by feature name and enabled; ordered by id; cursor pagination.',
      querystring: MonitorQuery,
      response: { 200: MonitorList, ...problems(400, 401, 403, 429, 503) },
    },
  }, async (request) => app.services.monitors.list(request.query))

  app.get('/v1/drift/monitors/:id', {
    schema: {
      tags: ['monitoring'],
      summary: 'Get a drift monitor with its last run',
      params: MonitorId,
      response: { 200: MonitorView, ...problems(400, 401, 403, 404, 429, 503) },
    },
  }, async (request) => app.services.monitors.get(request.params.id))

  app.patch('/v1/drift/monitors/:id', {
    schema: {
      tags: ['monitoring'],
      summary: 'Change a drift monitor',
      description: 'Any of the fields of the monitor; entity_id null means all entities. A changed schedule, or a monitor enabled again, runs at the next look.',
      params: MonitorId,
      body: MonitorPatch,
      response: { 200: MonitorView, ...problems(400, 401, 403, 404, 409, 422, 429, 503) },
    },
  }, async (request) => app.services.monitors.update(request.params.id, request.body))

  app.delete('/v1/drift/monitors/:id', {
    schema: {
      tags: ['monitoring'],
      summary: 'Delete a drift monitor',
      description: 'Its log entries stay in the drift log.',
      params: MonitorId,
      response: { 204: Type.Null({ description: 'deleted' }), ...problems(400, 401, 403, 404, 429, 503) },
    },
  }, async (request, reply) => {
    await app.services.monitors.remove(request.params.id)
    return reply.code(204).send(null)
  })
}
