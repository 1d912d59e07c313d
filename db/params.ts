/** An epoch-millisecond time as a query parameter: RFC 3339 text, cast to timestamptz in the SQL. */
export function iso (ms: number): string {
  return new Date(ms).toISOString()
}
