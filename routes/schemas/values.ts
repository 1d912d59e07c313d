import { Type, type Static } from 'typebox'
import { Nullable } from './common.js'

export const OnInvalidQuery = Type.Object({
  on_invalid: Type.Optional(Type.Union([Type.Literal('reject'), Type.Literal('skip')], {
    default: 'reject',
    description: 'reject (default): any invalid row rejects the whole request (422), nothing is written. skip: valid rows are written, invalid ones reported.',
  })),
})

export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({
    minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7E]+$',
    description: 'Makes the request safe to retry: a retry with the same key and the same body returns the first answer (with Idempotent-Replayed: true) and writes nothing; the same key with another body is a 422. A key belongs to the API key that sent it: the same key from another API key is another request. Keys are kept at least 24 hours.',
  })),
})

/**
 * The JSON body. Rows are checked one by one by the service (so that on_invalid=skip can skip
 * a malformed row and every problem is reported with its row number), not by the schema.
 */
export const JsonBody = Type.Object({
  rows: Type.Array(Type.Unknown({ description: 'a long row {feature, entity_id, event_time, value} (see the example)' }), {
    description: 'up to MAX_JSON_ROWS (default 100,000) long rows; row numbers in errors are 0-based indexes into this array',
  }),
}, {
  examples: [{ rows: [
    { feature: 'close_price', entity_id: 'BTCUSDT', event_time: '2023-06-01T13:00:00Z', value: 27123.5 },
    { feature: 'volume@1', entity_id: 'BTCUSDT', event_time: 1685624400000, value: 1432.1 },
  ] }],
})

export const NdjsonBody = Type.Unknown({
  description: 'One long row {feature, entity_id, event_time, value} per line, streamed without a size limit. Row numbers in errors are 1-based line numbers; blank lines are ignored.',
  examples: ['{"feature":"close_price","entity_id":"BTCUSDT","event_time":"2023-06-01T13:00:00Z","value":27123.5}\n'],
})

export const CsvBody = Type.Unknown({
  description: 'Streamed without a size limit. Long: header feature,entity_id,event_time,value. Wide: header entity_id,event_time then one column per feature reference; an empty cell in a wide CSV means no value (nothing is written for it), in a long CSV a null. Row numbers in errors are 1-based data rows (the header is row 0).',
  examples: ['entity_id,event_time,close_price,volume\nBTCUSDT,2023-06-01T13:00:00Z,27123.5,1432.1\n'],
})

export const IngestResponse = Type.Object({
  received: Type.Integer({ description: 'values read from the body (a wide CSV cell is one value; empty cells are not counted)' }),
  written: Type.Integer({ description: 'rows written to feature_snapshots (same feature, entity and event_time in one request: the last one wins)' }),
  skipped: Type.Integer({ description: 'invalid values not written (on_invalid=skip)' }),
  ingested_at: Nullable(Type.String(), 'the one knowledge time stamped on every row written; null when nothing was written'),
  error_count: Type.Optional(Type.Integer({ description: 'invalid fields in total (errors lists the first 100)' })),
  errors: Type.Optional(Type.Array(Type.Object({
    row: Type.Integer(),
    path: Type.String(),
    field: Type.Optional(Type.String()),
    rule: Type.Optional(Type.String()),
    message: Type.String(),
  }))),
}, { additionalProperties: false })
export type IngestResponse = Static<typeof IngestResponse>
