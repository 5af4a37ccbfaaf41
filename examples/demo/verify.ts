/**
 * The demo's checks, against both stores: what the outbox holds, what EventoDB holds, what the handlers recorded and
 * what the read model says.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { EventoClient } from "../../src/index.js"

export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

export interface Report {
  readonly checks: ReadonlyArray<Check>
  readonly latency: { readonly p50: number; readonly p95: number; readonly p99: number }
}

const OutboxRow = Schema.Struct({ id: Schema.String, stream: Schema.String, sent: Schema.Boolean })
const DeliveryStats = Schema.Struct({
  handled: Schema.NumberFromString,
  distinct_ids: Schema.NumberFromString,
  out_of_order: Schema.NumberFromString,
  split_streams: Schema.NumberFromString,
  p50: Schema.NullOr(Schema.Number),
  p95: Schema.NullOr(Schema.Number),
  p99: Schema.NullOr(Schema.Number)
})
const MemberCount = Schema.Struct({ member: Schema.Number, handled: Schema.NumberFromString })
const ReadModel = Schema.Struct({
  applications: Schema.NumberFromString,
  leads: Schema.NumberFromString,
  mismatched: Schema.NumberFromString
})

const decode = <A, I>(schema: Schema.Schema<A, I>) => (rows: ReadonlyArray<unknown>) =>
  Effect.orDie(Schema.decodeUnknown(Schema.Array(schema))(rows))

/** Every message of the category, in global-position order. */
const readCategory = (category: string) =>
  Effect.gen(function*() {
    const client = yield* EventoClient.EventoClient
    const all: Array<EventoClient.Message> = []
    let position = 0
    while (true) {
      const batch = yield* client.categoryGet(category, { position, batchSize: 1000 })
      all.push(...batch)
      const last = batch[batch.length - 1]
      if (last === undefined || batch.length < 1000) return all
      position = last.globalPosition + 1
    }
  })

export const verify = (options: {
  readonly runId: string
  readonly namespace: string
  readonly category: string
  readonly events: number
  readonly streams: number
  readonly members: number
}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { category, runId } = options

    const outbox = yield* sql`
      SELECT id::text AS id, stream, sent_at IS NOT NULL AS sent
      FROM evento_outbox
      WHERE namespace = ${options.namespace}
        AND split_part(stream, '-', 1) = ${category}
        AND type <> 'ReadinessProbe'
    `.pipe(Effect.flatMap(decode(OutboxRow)))
    const outboxIds = new Set(outbox.map((row) => row.id))
    const unsent = outbox.filter((row) => !row.sent).length

    const stored = (yield* readCategory(category)).filter((message) => message.type !== "ReadinessProbe")
    const storedIds = new Set(stored.map((message) => message.id))
    const notInOutbox = stored.filter((message) => !outboxIds.has(message.id)).length
    const missingInStore = outbox.filter((row) => !storedIds.has(row.id)).length
    // Per stream, positions must run 0, 1, 2... and each message's `n` must be its position.
    const nextPosition = new Map<string, number>()
    let storeOutOfOrder = 0
    for (const message of [...stored].sort((a, b) => a.position - b.position)) {
      const expected = nextPosition.get(message.streamName) ?? 0
      if (message.position !== expected || message.data.n !== expected) storeOutOfOrder++
      nextPosition.set(message.streamName, expected + 1)
    }

    const [deliveries] = yield* sql`
      SELECT
        count(*)::text AS handled,
        count(DISTINCT event_id)::text AS distinct_ids,
        count(*) FILTER (WHERE NOT in_order)::text AS out_of_order,
        (SELECT count(*) FROM (
          SELECT stream FROM demo_deliveries WHERE run_id = ${runId} GROUP BY stream HAVING count(DISTINCT member) > 1
        ) s)::text AS split_streams,
        percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms) AS p50,
        percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,
        percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
      FROM demo_deliveries
      WHERE run_id = ${runId}
    `.pipe(Effect.flatMap(decode(DeliveryStats)))
    const handledIds = new Set(
      (yield* sql<{ readonly event_id: string }>`
        SELECT DISTINCT event_id::text AS event_id FROM demo_deliveries WHERE run_id = ${runId}
      `).map((row) => row.event_id)
    )
    const notHandled = outbox.filter((row) => !handledIds.has(row.id)).length
    const perMember = yield* sql`
      SELECT member, count(*)::text AS handled FROM demo_deliveries WHERE run_id = ${runId} GROUP BY member ORDER BY 1
    `.pipe(Effect.flatMap(decode(MemberCount)))

    const [readModel] = yield* sql`
      SELECT
        (SELECT count(*) FROM demo_applications WHERE run_id = ${runId})::text AS applications,
        (SELECT count(*) FROM demo_leads WHERE run_id = ${runId})::text AS leads,
        (SELECT count(*)
         FROM (SELECT * FROM demo_applications WHERE run_id = ${runId}) a
         FULL JOIN (SELECT * FROM demo_leads WHERE run_id = ${runId}) l ON l.application_id = a.id
         WHERE a.id IS NULL OR l.application_id IS NULL
           OR (a.company, a.contact_email, a.status, a.score, a.notes, a.version)
              IS DISTINCT FROM (l.company, l.contact_email, l.status, l.score, l.notes, l.version)
        )::text AS mismatched
    `.pipe(Effect.flatMap(decode(ReadModel)))
    if (deliveries === undefined || readModel === undefined) return yield* Effect.dieMessage("no aggregate row")

    const expectedStreams = Math.min(options.streams, options.events)
    const duplicates = deliveries.handled - deliveries.distinct_ids
    const members = perMember.map((row) => `${row.member}: ${row.handled}`).join(", ")
    const checks: Array<Check> = [
      {
        name: "events written",
        ok: outbox.length === options.events,
        detail: `${outbox.length} of ${options.events}, over ${expectedStreams} streams, each with its business row`
      },
      {
        name: "stored in EventoDB",
        ok: unsent === 0 && stored.length === outbox.length && storedIds.size === stored.length &&
          notInOutbox === 0 && missingInStore === 0,
        detail: `${stored.length} messages with the outbox ids as message ids; ${unsent} unsent, ${missingInStore} ` +
          `missing, ${notInOutbox} unknown, ${stored.length - storedIds.size} duplicate ids`
      },
      {
        name: "delivered exactly once (by id)",
        ok: deliveries.handled === outbox.length && duplicates === 0 && notHandled === 0 &&
          handledIds.size === outbox.length,
        detail: `${deliveries.handled} handled, ${duplicates} duplicates, ${notHandled} missing; ` +
          `by member ${members || "none"}`
      },
      {
        name: "per-stream order kept",
        ok: storeOutOfOrder === 0 && deliveries.out_of_order === 0 && deliveries.split_streams === 0,
        detail: `${storeOutOfOrder} out of order in EventoDB, ${deliveries.out_of_order} out of order at the ` +
          `handlers, ${deliveries.split_streams} streams handled by more than one member`
      },
      {
        name: "read model complete",
        ok: readModel.mismatched === 0 && readModel.leads === expectedStreams &&
          readModel.applications === expectedStreams,
        detail: `${readModel.leads} leads for ${readModel.applications} applications, ${readModel.mismatched} differ`
      }
    ]
    const report: Report = {
      checks,
      latency: { p50: deliveries.p50 ?? NaN, p95: deliveries.p95 ?? NaN, p99: deliveries.p99 ?? NaN }
    }
    return report
  })
