/**
 * The cleanup worker: the SQL that prunes sent outbox rows and safely old processed marks, in bounded batches, and
 * the loop that runs it on a schedule.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type { Removed, Result } from "../Cleanup.js"

/** The options with every default applied. */
export interface Resolved {
  readonly namespace: string | undefined
  readonly sentRetention: Duration.Duration
  readonly markRetention: Duration.Duration
  readonly markWindow: number
  readonly batchSize: number
  readonly interval: Duration.Duration
  readonly dryRun: boolean
}

/** The public options, restated so the internal module does not import the public one. */
export interface Input {
  readonly namespace?: string | undefined
  readonly sentRetention?: Duration.DurationInput | undefined
  readonly markRetention?: Duration.DurationInput | undefined
  readonly markWindow?: number | undefined
  readonly batchSize?: number | undefined
  readonly interval?: Duration.DurationInput | undefined
  readonly dryRun?: boolean | undefined
}

export const defaults = {
  sentRetention: Duration.days(7),
  markRetention: Duration.days(7),
  markWindow: 10_000,
  batchSize: 5_000,
  interval: Duration.hours(1)
} as const

const wholeAtLeast = (value: number | undefined, minimum: number, fallback: number): number =>
  value === undefined || !Number.isFinite(value) ? fallback : Math.max(minimum, Math.floor(value))

// A negative window would let marks above the consumer's position go: clamp it, never trust it.
export const resolve = (input: Input = {}): Resolved => ({
  namespace: input.namespace,
  sentRetention: Duration.decode(input.sentRetention ?? defaults.sentRetention),
  markRetention: Duration.decode(input.markRetention ?? defaults.markRetention),
  markWindow: wholeAtLeast(input.markWindow, 0, defaults.markWindow),
  batchSize: wholeAtLeast(input.batchSize, 1, defaults.batchSize),
  interval: Duration.decode(input.interval ?? defaults.interval),
  dryRun: input.dryRun ?? false
})

/** The name the worker competes for under `Singleton`: one per namespace, `*` for every namespace. */
export const singletonName = (namespace: string | undefined): string => `cleanup:${namespace ?? "*"}`

// --- metrics ---

export const metrics = {
  outboxRemoved: Metric.counter("eventodb_cleanup_outbox_removed_total", {
    description: "Sent outbox rows removed by cleanup",
    incremental: true
  }),
  marksRemoved: Metric.counter("eventodb_cleanup_marks_removed_total", {
    description: "Processed-event marks removed by cleanup",
    incremental: true
  })
}

// --- one pass ---

const Counts = Schema.Array(Schema.Struct({ namespace: Schema.String, removed: Schema.Number }))
const decodeCounts = (rows: ReadonlyArray<unknown>) =>
  Schema.decodeUnknown(Counts)(rows).pipe(
    Effect.mapError((cause) => new SqlError({ cause, message: "cleanup counts did not decode" }))
  )

const seconds = (duration: Duration.Duration) => Duration.toMillis(duration) / 1000

const add = (totals: Map<string, number>, rows: ReadonlyArray<{ namespace: string; removed: number }>) => {
  let sum = 0
  for (const row of rows) {
    totals.set(row.namespace, (totals.get(row.namespace) ?? 0) + row.removed)
    sum += row.removed
  }
  return sum
}

export const once = (input?: Input): Effect.Effect<Result, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const options = resolve(input)
    const sql = (yield* SqlClient).withoutTransforms()
    const namespace = options.namespace

    // A row with `sent_at` set was delivered; `parked_at` is checked too so that no state an operator may still act
    // on is ever touched, whatever wrote it. Unsent rows have `sent_at` NULL and never match the comparison.
    const sentRows = sql`
      o.sent_at IS NOT NULL
      AND o.parked_at IS NULL
      AND o.sent_at < now() - make_interval(secs => ${seconds(options.sentRetention)})
      ${namespace === undefined ? sql`` : sql`AND o.namespace = ${namespace}`}
    `

    // A mark guards against handling a message twice only while its consumer may still fetch that message: after a
    // crash before the position moved, or after a small reset. Well below the saved position (by the window) and
    // old, it can go. Version 1 marks have no position to compare and go by age alone.
    const oldMarks = sql`
      e.processed_at < now() - make_interval(secs => ${seconds(options.markRetention)})
      ${namespace === undefined ? sql`` : sql`AND e.namespace = ${namespace}`}
      AND (
        e.global_position IS NULL
        OR EXISTS (
          SELECT 1
          FROM evento_consumer_positions AS p
          WHERE p.namespace = e.namespace
            AND p.category = e.category
            AND p.consumer_id = e.consumer_id
            AND e.global_position < p.position - ${options.markWindow}
        )
      )
    `

    const sentTotals = new Map<string, number>()
    const markTotals = new Map<string, number>()

    if (options.dryRun) {
      add(
        sentTotals,
        yield* sql`
          SELECT o.namespace, count(*)::int AS removed
          FROM evento_outbox AS o
          WHERE ${sentRows}
          GROUP BY o.namespace
        `.pipe(Effect.flatMap(decodeCounts))
      )
      add(
        markTotals,
        yield* sql`
          SELECT e.namespace, count(*)::int AS removed
          FROM evento_processed_events AS e
          WHERE ${oldMarks}
          GROUP BY e.namespace
        `.pipe(Effect.flatMap(decodeCounts))
      )
    } else {
      // Bounded batches, each its own statement: a large backlog never becomes one long transaction holding locks
      // and writing a burst of WAL, and an interrupted pass keeps what it removed.
      const deleteSent = sql`
        WITH doomed AS (
          SELECT o.id
          FROM evento_outbox AS o
          WHERE ${sentRows}
          LIMIT ${options.batchSize}
        ), removed AS (
          DELETE FROM evento_outbox AS o
          USING doomed AS d
          WHERE o.id = d.id
          RETURNING o.namespace
        )
        SELECT namespace, count(*)::int AS removed FROM removed GROUP BY namespace
      `.pipe(Effect.flatMap(decodeCounts))

      const deleteMarks = sql`
        WITH doomed AS (
          SELECT e.namespace, e.category, e.consumer_id, e.event_id
          FROM evento_processed_events AS e
          WHERE ${oldMarks}
          LIMIT ${options.batchSize}
        ), removed AS (
          DELETE FROM evento_processed_events AS e
          USING doomed AS d
          WHERE e.namespace = d.namespace
            AND e.category = d.category
            AND e.consumer_id = d.consumer_id
            AND e.event_id = d.event_id
          RETURNING e.namespace
        )
        SELECT namespace, count(*)::int AS removed FROM removed GROUP BY namespace
      `.pipe(Effect.flatMap(decodeCounts))

      const drain = (statement: typeof deleteSent, totals: Map<string, number>, counter: typeof metrics.marksRemoved) =>
        Effect.gen(function*() {
          while (true) {
            const rows = yield* statement
            const removed = add(totals, rows)
            yield* Effect.forEach(
              rows,
              (row) => Metric.incrementBy(Metric.tagged(counter, "namespace", row.namespace), row.removed),
              { discard: true }
            )
            if (removed < options.batchSize) return
          }
        })

      yield* drain(deleteSent, sentTotals, metrics.outboxRemoved)
      yield* drain(deleteMarks, markTotals, metrics.marksRemoved)
    }

    const names = [...new Set([...sentTotals.keys(), ...markTotals.keys()])].sort()
    const namespaces = names.map((name): Removed => ({
      namespace: name,
      sentRows: sentTotals.get(name) ?? 0,
      marks: markTotals.get(name) ?? 0
    }))
    return {
      sentRows: namespaces.reduce((sum, n) => sum + n.sentRows, 0),
      marks: namespaces.reduce((sum, n) => sum + n.marks, 0),
      namespaces
    }
  })

// --- the loop ---

/** A pass now and then one every `interval`, forever; a failed pass is logged and the next one tries again. */
export const run = (input?: Input): Effect.Effect<never, never, SqlClient> => {
  const options = resolve({ ...input, dryRun: false })
  const pass = once(options).pipe(
    Effect.tap((result) =>
      result.sentRows + result.marks > 0
        ? Effect.logInfo("cleanup removed rows").pipe(
          Effect.annotateLogs({ sentRows: result.sentRows, marks: result.marks })
        )
        : Effect.logDebug("cleanup found nothing to remove")
    ),
    Effect.catchAllCause((cause) => Effect.logWarning("cleanup pass failed, will retry", cause)),
    Effect.withSpan("Cleanup.pass", { attributes: { "eventodb.namespace": options.namespace ?? "*" } })
  )
  return pass.pipe(
    Effect.repeat(Schedule.spaced(options.interval)),
    // The schedule never ends; this only tells the type so.
    Effect.zipRight(Effect.never),
    Effect.annotateLogs({
      package: "eventodb-kit",
      module: "Cleanup",
      fiber: "cleanup",
      namespace: options.namespace ?? "*"
    })
  )
}
