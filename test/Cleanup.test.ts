import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as TestServices from "effect/TestServices"
import * as Cleanup from "../src/Cleanup.js"
import type { Message } from "../src/EventoClient.js"
import * as Idempotency from "../src/Idempotency.js"
import * as Migrations from "../src/Migrations.js"
import * as PositionStore from "../src/PositionStore.js"
import * as SingletonModule from "../src/Singleton.js"
import { Singleton } from "../src/Singleton.js"
import * as PgTest from "./support/PgTest.js"

const Database = Layer.effectDiscard(Migrations.up()).pipe(Layer.provideMerge(PgTest.layer))
const TestLayer = Layer.mergeAll(Idempotency.layer, PositionStore.layer).pipe(Layer.provideMerge(Database))

let counter = 0
const freshNamespace = () => `clean-${Date.now().toString(36)}-${(counter++).toString(36)}`

interface OutboxRow {
  readonly namespace: string
  /** Days since it was sent; absent: unsent. */
  readonly sentDaysAgo?: number
  readonly parked?: boolean
  readonly createdDaysAgo?: number
}

/** Inserts an outbox row with the given age and state; yields its id. */
const insertOutbox = (row: OutboxRow) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ id: string }>`
      INSERT INTO evento_outbox (namespace, stream, type, data, created_at, sent_at, parked_at, attempts, last_error)
      VALUES (
        ${row.namespace}, 'order-1', 'Placed', '{}'::jsonb,
        now() - make_interval(days => ${row.createdDaysAgo ?? row.sentDaysAgo ?? 0}),
        ${row.sentDaysAgo === undefined ? null : sql`now() - make_interval(days => ${row.sentDaysAgo})`},
        ${row.parked === true ? sql`now() - make_interval(days => 20)` : null},
        ${row.parked === true ? 10 : 0},
        ${row.parked === true ? "broken" : null}
      )
      RETURNING id::text AS id
    `
    return rows[0]!.id
  }).pipe(Effect.orDie)

const outboxIds = (namespace: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ id: string }>`SELECT id::text AS id FROM evento_outbox WHERE namespace = ${namespace}`.pipe(
        Effect.map((rows) => new Set(rows.map((r) => r.id)))
      )
  ).pipe(Effect.orDie)

interface Mark {
  readonly namespace: string
  readonly consumerId?: string
  readonly globalPosition: number | null
  readonly daysAgo: number
}

/** Inserts a processed mark for consumer `consumerId` (default `projector`) of category `order`; yields its id. */
const insertMark = (mark: Mark) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ id: string }>`
      INSERT INTO evento_processed_events
        (event_id, namespace, event_type, category, consumer_id, processed_at, global_position)
      VALUES (
        gen_random_uuid(), ${mark.namespace}, 'Placed', 'order', ${mark.consumerId ?? "projector"},
        now() - make_interval(days => ${mark.daysAgo}), ${mark.globalPosition}
      )
      RETURNING event_id::text AS id
    `
    return rows[0]!.id
  }).pipe(Effect.orDie)

const markIds = (namespace: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ id: string }>`
      SELECT event_id::text AS id FROM evento_processed_events WHERE namespace = ${namespace}
    `.pipe(Effect.map((rows) => new Set(rows.map((r) => r.id))))).pipe(Effect.orDie)

const key = (namespace: string, consumerId = "projector"): PositionStore.ConsumerKey => ({
  namespace,
  category: "order",
  consumerId
})

const counterValue = (metric: Metric.Metric.Counter<number>, namespace: string) =>
  Metric.value(Metric.tagged(metric, "namespace", namespace)).pipe(Effect.map((state) => state.count))

describe("Cleanup", () => {
  it.layer(TestLayer, { timeout: "60 seconds" })("one pass", (it) => {
    it.effect("removes sent rows older than the retention and keeps recent, unsent and parked rows", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        const oldSent = yield* insertOutbox({ namespace, sentDaysAgo: 8 })
        const recentSent = yield* insertOutbox({ namespace, sentDaysAgo: 6 })
        const oldUnsent = yield* insertOutbox({ namespace, createdDaysAgo: 30 })
        const oldParked = yield* insertOutbox({ namespace, createdDaysAgo: 30, parked: true })

        const result = yield* Cleanup.once({ namespace })

        assert.deepStrictEqual(yield* outboxIds(namespace), new Set([recentSent, oldUnsent, oldParked]))
        assert.isFalse((yield* outboxIds(namespace)).has(oldSent))
        assert.strictEqual(result.sentRows, 1)
        assert.deepStrictEqual(result.namespaces, [{ namespace, sentRows: 1, marks: 0 }])
      }))

    it.effect("never removes an unsent or parked row, even with a zero retention", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        const unsent = yield* insertOutbox({ namespace, createdDaysAgo: 365 })
        const parked = yield* insertOutbox({ namespace, createdDaysAgo: 365, parked: true })
        const sent = yield* insertOutbox({ namespace, sentDaysAgo: 0 })

        const result = yield* Cleanup.once({ namespace, sentRetention: 0 })

        assert.deepStrictEqual(yield* outboxIds(namespace), new Set([unsent, parked]))
        assert.isFalse((yield* outboxIds(namespace)).has(sent))
        assert.strictEqual(result.sentRows, 1)
      }))

    it.effect("with a namespace touches no other namespace; without one, cleans every namespace", () =>
      Effect.gen(function*() {
        const a = freshNamespace()
        const b = freshNamespace()
        yield* insertOutbox({ namespace: a, sentDaysAgo: 10 })
        const inB = yield* insertOutbox({ namespace: b, sentDaysAgo: 10 })

        yield* Cleanup.once({ namespace: a })
        assert.strictEqual((yield* outboxIds(a)).size, 0)
        assert.deepStrictEqual(yield* outboxIds(b), new Set([inB]))

        const everywhere = yield* Cleanup.once()
        assert.strictEqual((yield* outboxIds(b)).size, 0)
        assert.isTrue(everywhere.namespaces.some((n) => n.namespace === b && n.sentRows === 1))
      }))

    it.effect("removes marks below the saved position minus the window that are older than the retention", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* PositionStore.save(key(namespace), 50_000)
        const belowWindow = yield* insertMark({ namespace, globalPosition: 39_999, daysAgo: 8 })
        const atWindowEdge = yield* insertMark({ namespace, globalPosition: 40_000, daysAgo: 8 })
        const insideWindow = yield* insertMark({ namespace, globalPosition: 49_000, daysAgo: 30 })
        const belowButRecent = yield* insertMark({ namespace, globalPosition: 10, daysAgo: 6 })

        const result = yield* Cleanup.once({ namespace })

        assert.deepStrictEqual(yield* markIds(namespace), new Set([atWindowEdge, insideWindow, belowButRecent]))
        assert.isFalse((yield* markIds(namespace)).has(belowWindow))
        assert.strictEqual(result.marks, 1)
      }))

    it.effect("never removes a mark at or above its consumer's position, nor one whose consumer saved none", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* PositionStore.save(key(namespace), 100)
        // Marked in a batch whose position never committed (a crash): the consumer will fetch these again.
        const atPosition = yield* insertMark({ namespace, globalPosition: 100, daysAgo: 400 })
        const above = yield* insertMark({ namespace, globalPosition: 150, daysAgo: 400 })
        const noPosition = yield* insertMark({ namespace, consumerId: "fresh", globalPosition: 1, daysAgo: 400 })

        // The most eager settings there are: no window, no retention.
        const result = yield* Cleanup.once({ namespace, markWindow: 0, markRetention: 0 })

        assert.strictEqual(result.marks, 0)
        assert.deepStrictEqual(yield* markIds(namespace), new Set([atPosition, above, noPosition]))
        assert.isTrue(yield* Idempotency.isProcessed(key(namespace), above))
        assert.isTrue(yield* Idempotency.isProcessed(key(namespace, "fresh"), noPosition))
      }))

    it.effect("a negative window counts as none: marks above the position stay", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* PositionStore.save(key(namespace), 100)
        const above = yield* insertMark({ namespace, globalPosition: 101, daysAgo: 30 })
        const below = yield* insertMark({ namespace, globalPosition: 99, daysAgo: 30 })

        yield* Cleanup.once({ namespace, markWindow: -1_000_000 })

        assert.deepStrictEqual(yield* markIds(namespace), new Set([above]))
        assert.isFalse((yield* markIds(namespace)).has(below))
      }))

    it.effect("the window is per consumer: another consumer's higher position does not free a mark", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* PositionStore.save(key(namespace, "fast"), 1_000_000)
        yield* PositionStore.save(key(namespace, "slow"), 500)
        const slowMark = yield* insertMark({ namespace, consumerId: "slow", globalPosition: 400, daysAgo: 30 })
        yield* insertMark({ namespace, consumerId: "fast", globalPosition: 400, daysAgo: 30 })

        const result = yield* Cleanup.once({ namespace })

        assert.strictEqual(result.marks, 1)
        assert.deepStrictEqual(yield* markIds(namespace), new Set([slowMark]))
      }))

    it.effect("marks without a global position (schema version 1) go by age alone", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* insertMark({ namespace, consumerId: "legacy", globalPosition: null, daysAgo: 8 })
        const recent = yield* insertMark({ namespace, consumerId: "legacy", globalPosition: null, daysAgo: 1 })

        const result = yield* Cleanup.once({ namespace })

        assert.strictEqual(result.marks, 1)
        assert.deepStrictEqual(yield* markIds(namespace), new Set([recent]))
      }))

    it.effect("removes in batches until nothing is left, and counts per namespace", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* PositionStore.save(key(namespace), 100_000)
        yield* Effect.forEach(Array.from({ length: 11 }), () => insertOutbox({ namespace, sentDaysAgo: 9 }))
        yield* Effect.forEach(
          Array.from({ length: 7 }, (_, i) => i + 1),
          (n) => insertMark({ namespace, globalPosition: n, daysAgo: 9 })
        )
        const sentBefore = yield* counterValue(Cleanup.metrics.outboxRemoved, namespace)
        const marksBefore = yield* counterValue(Cleanup.metrics.marksRemoved, namespace)

        const result = yield* Cleanup.once({ namespace, batchSize: 3 })

        assert.deepStrictEqual(result, { sentRows: 11, marks: 7, namespaces: [{ namespace, sentRows: 11, marks: 7 }] })
        assert.strictEqual((yield* outboxIds(namespace)).size, 0)
        assert.strictEqual((yield* markIds(namespace)).size, 0)
        assert.strictEqual((yield* counterValue(Cleanup.metrics.outboxRemoved, namespace)) - sentBefore, 11)
        assert.strictEqual((yield* counterValue(Cleanup.metrics.marksRemoved, namespace)) - marksBefore, 7)
      }))

    it.effect("a dry run counts what would go and removes nothing", () =>
      Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* PositionStore.save(key(namespace), 100_000)
        yield* insertOutbox({ namespace, sentDaysAgo: 9 })
        yield* insertOutbox({ namespace, sentDaysAgo: 1 })
        yield* insertMark({ namespace, globalPosition: 5, daysAgo: 9 })

        const result = yield* Cleanup.once({ namespace, dryRun: true })

        assert.deepStrictEqual(result, { sentRows: 1, marks: 1, namespaces: [{ namespace, sentRows: 1, marks: 1 }] })
        assert.strictEqual((yield* outboxIds(namespace)).size, 2)
        assert.strictEqual((yield* markIds(namespace)).size, 1)
      }))

    it.effect("a consumer that meets a pruned-window message again still recognises it", () =>
      Effect.gen(function*() {
        // The consumer handled up to 20; a reset back to 15 (inside the window) replays 16..20: their marks must
        // survive any cleanup, or the replay would handle them twice.
        const namespace = freshNamespace()
        const k = key(namespace)
        const messages = Array.from({ length: 20 }, (_, i) => message(i + 1))
        yield* Effect.forEach(messages, (m) => Idempotency.markProcessed(k, m))
        yield* PositionStore.save(k, 20)
        const sql = yield* SqlClient.SqlClient
        yield* sql`
          UPDATE evento_processed_events SET processed_at = now() - interval '30 days' WHERE namespace = ${namespace}
        `
        yield* PositionStore.reset(k, 15)

        const result = yield* Cleanup.once({ namespace, markWindow: 10 })

        assert.strictEqual(result.marks, 4) // 1..4 are below 15 - 10
        for (const m of messages.slice(4)) assert.isTrue(yield* Idempotency.isProcessed(k, m.id), m.id)
        for (const m of messages.slice(0, 4)) assert.isFalse(yield* Idempotency.isProcessed(k, m.id), m.id)
      }))
  })

  it.layer(TestLayer, { timeout: "60 seconds" })("worker", (it) => {
    it.effect("layer runs a pass at once and then every interval, under the singleton name of its namespace", () =>
      TestServices.provideLive(Effect.gen(function*() {
        const namespace = freshNamespace()
        const names: Array<string> = []
        const recording = Layer.succeed(Singleton, {
          run: (name, effect) => Effect.suspend(() => (names.push(name), effect))
        })
        const first = yield* insertOutbox({ namespace, sentDaysAgo: 8 })

        yield* Effect.gen(function*() {
          yield* waitUntil(Effect.map(outboxIds(namespace), (ids) => !ids.has(first)))
          const second = yield* insertOutbox({ namespace, sentDaysAgo: 8 })
          yield* waitUntil(Effect.map(outboxIds(namespace), (ids) => !ids.has(second)))
        }).pipe(
          Effect.provide(Cleanup.layer({ namespace, interval: "100 millis" }).pipe(Layer.provide(recording)))
        )

        assert.deepStrictEqual(names, [`cleanup:${namespace}`])
        assert.strictEqual(Cleanup.singletonName(), "cleanup:*")
      })))

    it.effect("stops with its layer", () =>
      TestServices.provideLive(Effect.gen(function*() {
        const namespace = freshNamespace()
        yield* Effect.gen(function*() {
          const first = yield* insertOutbox({ namespace, sentDaysAgo: 8 })
          yield* waitUntil(Effect.map(outboxIds(namespace), (ids) => !ids.has(first)))
        }).pipe(Effect.provide(Cleanup.layer({ namespace, interval: "50 millis" }).pipe(Layer.provide(memory))))

        const later = yield* insertOutbox({ namespace, sentDaysAgo: 8 })
        yield* Effect.sleep("300 millis")
        assert.isTrue((yield* outboxIds(namespace)).has(later))
      })))
  })

  it.layer(PgTest.layer, { timeout: "60 seconds" })("worker on a database that is not ready", (it) => {
    it.effect("a failing pass is logged and the next pass tries again", () =>
      TestServices.provideLive(Effect.gen(function*() {
        const namespace = freshNamespace()
        // The tables do not exist yet: every pass fails until they do.
        yield* Effect.gen(function*() {
          yield* Effect.sleep("300 millis")
          yield* Migrations.up()
          const row = yield* insertOutbox({ namespace, sentDaysAgo: 8 })
          yield* waitUntil(Effect.map(outboxIds(namespace), (ids) => !ids.has(row)))
        }).pipe(Effect.provide(Cleanup.layer({ namespace, interval: "100 millis" }).pipe(Layer.provide(memory))))
      })))
  })
})

const memory = SingletonModule.layerMemory

/** Polls `check` every 20 milliseconds, for at most 10 seconds. */
const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  check.pipe(
    Effect.flatMap((done) => done ? Effect.void : Effect.fail("not yet" as const)),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 500 }),
    Effect.orDie
  )

const message = (n: number): Message => ({
  id: `00000000-0000-4000-8000-${n.toString().padStart(12, "0")}`,
  streamName: `order-${n}`,
  type: "Placed",
  position: 0,
  globalPosition: n,
  data: { n },
  metadata: Option.none(),
  time: new Date(0)
})
