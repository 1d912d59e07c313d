import type { Sql } from '../../db/connection.js'
import type { BoundedReads } from '../../db/point-in-time.js'
import { MAX_RETRIEVE_FEATURES, type RetrieveRequest, type RetrieveResponse } from '../../routes/schemas/retrieve.js'
import { UnprocessableError } from '../domain/errors.js'
import { entityIdProblem } from '../domain/names.js'
import { formatTimestamp, parseTimestamp } from '../domain/time.js'
import { contractRefsWithin, joinPointInTime, requireFeaturesOrContract, resolveContract, resolveCutoff, resolveFeatures } from './training-sets.js'

type PointValue = RetrieveResponse['results'][number]['values'][string]

/**
 * Time travel: the values of some entities at one past moment T (as_of), as known at K
 * (as_of_system_time). The same join as training sets, with one row per entity at T.
 */
export class RetrievalService {
  constructor (private readonly sql: Sql, private readonly opts: { blockRows: number, boundedReads?: BoundedReads, packs?: boolean }) {}

  async retrieve (request: RetrieveRequest): Promise<RetrieveResponse> {
    const asOf = parseTimestamp(request.as_of)
    if (!asOf.ok) throw new UnprocessableError(`as_of: ${asOf.message}`, [{ path: '/body/as_of', field: 'as_of', rule: 'timestamp', message: asOf.message }])
    const badIds = request.entities.flatMap((id, i) => {
      const p = entityIdProblem(id)
      return p ? [{ path: `/body/entities/${i}`, row: i, field: 'entities', rule: 'entity_id', message: p }] : []
    })
    if (badIds.length > 0) throw new UnprocessableError(`Invalid entity ids: ${badIds.slice(0, 3).map((e) => `${e.path} ${e.message}`).join('; ')}`, badIds)

    requireFeaturesOrContract(request.features !== undefined, request.contract !== undefined)
    const contract = request.contract === undefined ? undefined : await resolveContract(this.sql, request.contract, '/body/contract')
    // one join column per distinct reference; answers are keyed by the reference as given
    const refs = [...new Set(contract === undefined ? request.features : contractRefsWithin(contract, MAX_RETRIEVE_FEATURES, 'a retrieval', '/body/contract'))]
    const features = await resolveFeatures(this.sql, refs, contract === undefined ? '/body/features' : '/body/contract')
    const cutoffMs = await resolveCutoff(this.sql, request.as_of_system_time)
    const results: RetrieveResponse['results'] = request.entities.map((entity_id) => ({ entity_id, values: {} }))
    const source = {
      count: request.entities.length,
      entityAt: (i: number) => request.entities[i],
      timeAt: () => asOf.ms,
      extraAt: () => ({}),
    }
    for await (const { answers, offset } of joinPointInTime(this.sql, features, source, 'event', cutoffMs, this.opts.blockRows, 1, { boundedReads: this.opts.boundedReads, packs: this.opts.packs })) {
      for (let r = 0; r < answers.block.size; r++) {
        const values = results[offset + r].values
        for (let f = 0; f < refs.length; f++) {
          const at = answers.answerTime(r, f)
          const v: PointValue = {
            value: answers.value(r, f),
            event_time: at === null ? null : formatTimestamp(at),
            status: answers.statusName(r, f),
          }
          values[refs[f]] = v
        }
      }
    }
    return {
      as_of: formatTimestamp(asOf.ms),
      as_of_system_time: formatTimestamp(cutoffMs),
      features: features.map((d, i) => ({ ref: refs[i], name: d.name, version: d.version, dtype: d.dtype, ttl_ms: d.ttl_ms })),
      ...(contract === undefined ? {} : { contract: { name: contract.name, version: contract.version } }),
      results,
    }
  }
}
